// Package hostname is the one home of l4edge's host-name rules: the form in
// which names are compared, which names and patterns a configuration may
// hold, and how a one-label wildcard matches.
//
// Names are compared as lower-case A-labels without a trailing dot. SNI on
// the wire carries A-labels ("xn--bcher-kva.example", RFC 6066 section 3),
// and l4edge's ClientHello reader already lower-cases it and drops the
// trailing dot. A configuration may also hold U-labels ("bücher.example"):
// Normalize converts them with the IDNA lookup rules of UTS #46
// (golang.org/x/net/idna's Lookup profile), so both spellings of a name
// match the same connections. Names in ASCII are taken as written, with
// underscores allowed ("_acme.example") and A-labels not decoded.
package hostname

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Normalize returns s lower-cased, without a trailing dot, with U-labels
// converted to A-labels; a leading "*." is kept. A name IDNA refuses comes
// back lower-cased and matches nothing an SNI can carry; Pattern reports it.
func Normalize(s string) string {
	n, _ := normalize(s)
	return n
}

// NormalizeAll returns the names normalized, in order; nil for none.
func NormalizeAll(names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, Normalize(n))
	}
	return out
}

func normalize(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if isASCII(s) {
		return strings.ToLower(s), nil
	}
	wild, rest := "", s
	if r, ok := strings.CutPrefix(s, "*."); ok {
		wild, rest = "*.", r
	}
	a, err := idna.Lookup.ToASCII(rest)
	if err != nil {
		return strings.ToLower(s), err
	}
	return wild + a, nil
}

// Pattern checks a server name or one-label wildcard ("*.example.com") as a
// configuration writes it, case-insensitively, with an optional trailing
// dot and U-labels allowed, and returns its normalized form. The error
// quotes s and says what is wrong.
func Pattern(s string) (string, error) {
	p, err := normalize(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid server name: %v", s, err)
	}
	n := strings.TrimPrefix(p, "*.")
	if n == "" || len(n) > 253 {
		return "", fmt.Errorf("%q is not a valid server name", s)
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return "", fmt.Errorf("%q is not a valid server name", s)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("%q is not a valid server name (a wildcard may only be a leading \"*.\")", s)
			}
		}
	}
	return p, nil
}

// Match reports whether a normalized server name matches a normalized
// pattern: exactly, or "*.example.com" for exactly one non-empty label in
// front of example.com. An empty name (no SNI) matches nothing.
func Match(pattern, name string) bool {
	if name == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		label, domain, found := strings.Cut(name, ".")
		return found && label != "" && domain == rest
	}
	return pattern == name
}

// MatchAny reports whether a normalized server name matches one of the
// normalized patterns.
func MatchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if Match(p, name) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
