package l4

import (
	"slices"
	"strings"
)

// normalizeName lower-cases a server name and drops a trailing dot.
func normalizeName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// matchName reports whether a normalized server name matches a normalized
// pattern: exactly, or "*.example.com" for exactly one label in front.
func matchName(pattern, name string) bool {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		label, domain, found := strings.Cut(name, ".")
		return found && label != "" && domain == rest
	}
	return pattern == name
}

// matches reports whether a route accepts a ClientHello with this server name
// and ALPN list. A ClientHello without SNI matches only routes without
// match.sni; routes with match.alpn need one of their protocols offered.
func (r *route) matches(sni string, alpn []string) bool {
	if r.cfg.Match == nil {
		return true
	}
	if len(r.sni) > 0 {
		if sni == "" || !slices.ContainsFunc(r.sni, func(p string) bool { return matchName(p, sni) }) {
			return false
		}
	}
	if len(r.alpn) > 0 {
		return slices.ContainsFunc(alpn, func(p string) bool { return slices.Contains(r.alpn, p) })
	}
	return true
}

// pick returns the first route matching a ClientHello, or nil.
func (lr *listenerRuntime) pick(sni string, alpn []string) *route {
	for _, r := range lr.routes {
		if r.matches(sni, alpn) {
			return r
		}
	}
	return nil
}
