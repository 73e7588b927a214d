package hostname

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"*.Example.com.", "*.example.com"},
		{"_acme.example", "_acme.example"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.Example.", "xn--bcher-kva.example"},
		{"*.bücher.example", "*.xn--bcher-kva.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.example", "xn--bcher-kva.example"},
		{"münchen。de", "xn--mnchen-3ya.de"}, // ideographic full stop separates labels
		{"", ""},
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPattern(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "a.test", want: "a.test"},
		{in: "A.Test.", want: "a.test"},
		{in: "*.a.test", want: "*.a.test"},
		{in: "_srv.a.test", want: "_srv.a.test"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "*.Bücher.example.", want: "*.xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "", err: `"" is not a valid server name`},
		{in: ".", err: `"." is not a valid server name`},
		{in: "*.", err: `"*." is not a valid server name`},
		{in: "a..test", err: `"a..test" is not a valid server name`},
		{in: "a.test..", err: `"a.test.." is not a valid server name`},
		{in: "-a.test", err: `"-a.test" is not a valid server name`},
		{in: "a-.test", err: `"a-.test" is not a valid server name`},
		{in: strings.Repeat("a", 64) + ".test", err: "is not a valid server name"},
		{in: strings.Repeat("abcdefghi.", 26) + "test", err: "is not a valid server name"},
		{in: "a.*.test", err: `"a.*.test" is not a valid server name (a wildcard may only be a leading "*.")`},
		{in: "*", err: `"*" is not a valid server name (a wildcard may only be a leading "*.")`},
		{in: "**.a.test", err: `(a wildcard may only be a leading "*.")`},
		{in: "*.*.a.test", err: `(a wildcard may only be a leading "*.")`},
		{in: "a b.test", err: `(a wildcard may only be a leading "*.")`},
		{in: "bü*.example", err: `"bü*.example" is not a valid server name: idna:`},
		{in: "a.test/x", err: `(a wildcard may only be a leading "*.")`},
	} {
		got, err := Pattern(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("Pattern(%q) = %q, %v; want %q", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Pattern(%q) = %q, %v; want an error with %q", c.in, got, err, c.err)
		}
	}
}

// Match takes normalized names: the routes normalize their patterns once,
// the ClientHello reader normalizes the SNI.
func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"a.test", "a.test", true},
		{"a.test", "b.test", false},
		{"a.test", "x.a.test", false},
		{"a.test", "", false},
		{"*.a.test", "x.a.test", true},
		{"*.a.test", "x-y_z.a.test", true},
		{"*.a.test", "a.test", false},     // the wildcard needs a label
		{"*.a.test", ".a.test", false},    // an empty label is none
		{"*.a.test", "x.y.a.test", false}, // one label only
		{"*.a.test", "xa.test", false},
		{"*.a.test", "", false},
		{"*.test", "a.test", true},
		{"*.xn--bcher-kva.example", "shop.xn--bcher-kva.example", true},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", true},
		{"", "", false}, // no SNI never matches
	} {
		if got := Match(c.pattern, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

// A pattern as configured, normalized, matches the name a client sends in
// its ClientHello: A-labels, whatever case and trailing dot the
// configuration used.
func TestConfiguredPatternMatchesWireName(t *testing.T) {
	for _, c := range []struct {
		configured, sni string
		want            bool
	}{
		{"Bücher.Example.", "xn--bcher-kva.example", true},
		{"*.bücher.example", "www.xn--bcher-kva.example", true},
		{"*.bücher.example", "xn--bcher-kva.example", false},
		{"WWW.A.TEST.", "www.a.test", true},
		{"*.A.Test", "x.a.test", true},
		{"bücher.example", "bücher.example", false}, // U-labels never come off the wire
	} {
		p, err := Pattern(c.configured)
		if err != nil {
			t.Fatalf("Pattern(%q): %v", c.configured, err)
		}
		if got := MatchAny([]string{"other.test", p}, c.sni); got != c.want {
			t.Errorf("%q (%q) matching SNI %q = %v, want %v", c.configured, p, c.sni, got, c.want)
		}
	}
	if MatchAny(nil, "a.test") {
		t.Error("no patterns matched a name")
	}
}

func TestNormalizeAll(t *testing.T) {
	got := NormalizeAll([]string{"A.test.", "*.Bücher.example"})
	if len(got) != 2 || got[0] != "a.test" || got[1] != "*.xn--bcher-kva.example" {
		t.Errorf("NormalizeAll = %q", got)
	}
	if NormalizeAll(nil) != nil {
		t.Error("NormalizeAll(nil) is not nil")
	}
}
