package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimal is a valid file; bad cases edit it.
const minimal = `listeners:
  - name: edge
    listen: 127.0.0.1:8443
    routes:
      - pool: p
pools:
  p:
    backends:
      - address: 127.0.0.1:9001
`

func TestBadFiles(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown top key", minimal + "bogus: 1\n", "bogus: unknown key (line 10)"},
		{"unknown nested key", strings.Replace(minimal, "    listen:", "    lisen: x\n    listen:", 1), "listeners[0].lisen: unknown key (line 3)"},
		{"bad duration", minimal + "shutdown_grace: 5x\n", `shutdown_grace: invalid duration "5x" (line 10)`},
		{"negative duration", minimal + "shutdown_grace: -3s\n", `shutdown_grace: duration "-3s" must not be negative (line 10)`},
		{"duration without unit", minimal + "shutdown_grace: 30\n", "shutdown_grace: invalid duration 30: give a unit, e.g. 30s (line 10)"},
		{"missing pool", strings.Replace(minimal, "pool: p", "pool: ws", 1), `listeners[0].routes[0].pool: unknown pool "ws" (line 5)`},
		{"no pool on route", strings.Replace(minimal, "      - pool: p", "      - name: r", 1), "listeners[0].routes[0].pool: a pool is required (line 5)"},
		{"duplicate listener name", minimal + "  # \n", ""},
		{"bad listen address", strings.Replace(minimal, "127.0.0.1:8443", "nonsense", 1), `listeners[0].listen: "nonsense" is not host:port (line 3)`},
		{"bad listen port", strings.Replace(minimal, "127.0.0.1:8443", "127.0.0.1:99999", 1), `listeners[0].listen: "127.0.0.1:99999" has an invalid port (want 0-65535) (line 3)`},
		{"bad backend address", strings.Replace(minimal, "127.0.0.1:9001", "127.0.0.1", 1), `pools.p.backends[0].address: "127.0.0.1" is not host:port (line 9)`},
		{"negative weight", minimal + "        weight: -2\n", "pools.p.backends[0].weight: weight must be positive, got -2 (line 10)"},
		{"zero weight", minimal + "        weight: 0\n", "pools.p.backends[0].weight: weight must be positive, got 0 (line 10)"},
		{"empty pool", strings.Replace(minimal, "    backends:\n      - address: 127.0.0.1:9001\n", "    backends: []\n", 1), "pools.p.backends: a pool needs at least one backend (line 8)"},
		{"string for int", strings.Replace(minimal, "    routes:", "    max_connections: lots\n    routes:", 1), `listeners[0].max_connections: expected a whole number, got "lots" (line 4)`},
		{"map for list", strings.Replace(minimal, "    routes:\n      - pool: p", "    routes:\n      pool: p", 1), "listeners[0].routes: expected a list, got a mapping (line 5)"},
		{"list for string", strings.Replace(minimal, "name: edge", "name: [a, b]", 1), "listeners[0].name: expected a single value, got a list (line 2)"},
		{"inspect_timeout 0", strings.Replace(minimal, "    routes:", "    inspect_timeout: 0s\n    routes:", 1), "listeners[0].inspect_timeout: must be above 0: every inspected connection waits at most this long for its ClientHello (line 4)"},
		{"proxy header timeout 0", strings.Replace(minimal, "    routes:", "    proxy_protocol_in: {trusted: [127.0.0.1], timeout: 0s}\n    routes:", 1), "listeners[0].proxy_protocol_in.timeout: must be above 0: every trusted peer waits at most this long for its header (line 4)"},
		{"bad policy", minimal + "    policy: fastest\n", `pools.p.policy: "fastest" is not one of round_robin, weighted_round_robin, least_conn, random_two, ip_hash (line 10)`},
		{"bad proxy_protocol", minimal + "    proxy_protocol: v3\n", `pools.p.proxy_protocol: "v3" is not one of , v1, v2 (line 10)`},
		{"cert on passthrough", strings.Replace(minimal, "      - pool: p", "      - pool: p\n        tls: {mode: passthrough, cert: acme}", 1), "listeners[0].routes[0].tls.cert: not allowed with mode passthrough (line 6)"},
		{"files without key", strings.Replace(minimal, "      - pool: p", "      - pool: p\n        tls: {mode: terminate, cert: files, cert_file: /x.pem}", 1), "listeners[0].routes[0].tls: cert: files needs cert_file and key_file (line 6)"},
		{"acme without tls.acme", strings.Replace(minimal, "      - pool: p", "      - pool: p\n        match: {sni: [a.test]}\n        tls: {mode: terminate}", 1), "listeners[0].routes[0].tls.cert: cert: acme needs tls.acme (at least an email) (line 7)"},
		{"bad sni", strings.Replace(minimal, "      - pool: p", "      - pool: p\n        match: {sni: [\"a.*.test\"]}", 1), `listeners[0].routes[0].match.sni[0]: "a.*.test" is not a valid server name (a wildcard may only be a leading "*.") (line 6)`},
		{"empty match", strings.Replace(minimal, "      - pool: p", "      - pool: p\n        match: {}", 1), "listeners[0].routes[0].match: empty match; remove it to catch everything (line 6)"},
		{"bad trusted", strings.Replace(minimal, "    routes:", "    proxy_protocol_in: {trusted: [10.0.0.0/33]}\n    routes:", 1), `listeners[0].proxy_protocol_in.trusted[0]: "10.0.0.0/33" is neither a CIDR nor an address (line 4)`},
		{"bad health check", minimal + "    health: {check: ping}\n", `pools.p.health.check: "ping" is not one of tcp, tls, http, websocket (line 10)`},
		{"rise 0", minimal + "    health: {check: tcp, rise: 0}\n", "pools.p.health.rise: must be at least 1, got 0 (line 10)"},
		{"bad expect_status", minimal + "    health: {check: http, expect_status: [\"700\"]}\n", `pools.p.health.expect_status[0]: "700" is not a status or range within 100-599 (line 10)`},
		{"file and redis", minimal + "tls:\n  storage: {file: /x, redis: {address: 127.0.0.1:6379}}\n", "tls.storage: set file or redis, not both (line 11)"},
		{"bad acme ca", minimal + "tls:\n  acme: {email: a@b.c, ca: ftp://x}\n", `tls.acme.ca: "ftp://x" is not an http(s) URL of an ACME directory (line 11)`},
		{"bad log level", "log: {level: loud}\n" + minimal, `log.level: "loud" is not one of debug, info, warn, error (line 1)`},
		{"zero connect attempts", minimal + "    connect_attempts: 0\n", "pools.p.connect_attempts: must be at least 1, got 0 (line 10)"},
		{"no listeners", "pools: {}\n", "listeners: at least one listener is required"},
		{"duplicate key", minimal + "pools:\n  q: {backends: [{address: 127.0.0.1:1}]}\n", "pools: duplicate key (first on line 6) (line 10)"},
		{"yaml syntax", "listeners: [\n", "yaml:"},
	}
	dupName := strings.Replace(minimal, "pools:", "  - name: edge\n    listen: 127.0.0.1:8444\n    routes: [{pool: p}]\npools:", 1)
	dupAddr := strings.Replace(minimal, "pools:", "  - name: other\n    listen: 127.0.0.1:8443\n    routes: [{pool: p}]\npools:", 1)
	cases[7].yaml, cases[7].want = dupName, `listeners[1].name: duplicate listener name "edge" (also listeners[0]) (line 6)`
	cases = append(cases, struct{ name, yaml, want string }{"duplicate address", dupAddr,
		`listeners[1].listen: address "127.0.0.1:8443" is already used by listeners[0] (line 7)`})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.yaml)
			}
			found := false
			for _, e := range Errors(err) {
				if strings.Contains(e.Error(), tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want %q among:\n%v", tc.want, err)
			}
		})
	}
}

// Five independent mistakes come back together, each with its line.
func TestAllErrorsAtOnce(t *testing.T) {
	yaml := `bogus: 1
listeners:
  - name: edge
    listen: nonsense
    routes:
      - pool: missing
pools:
  p:
    policy: fastest
    backends:
      - address: 127.0.0.1:9001
        weight: -1
`
	_, err := Parse([]byte(yaml))
	errs := Errors(err)
	want := []string{
		"bogus: unknown key (line 1)",
		`listeners[0].listen: "nonsense" is not host:port (line 4)`,
		`listeners[0].routes[0].pool: unknown pool "missing" (line 6)`,
		`pools.p.policy: "fastest" is not one of`,
		"pools.p.backends[0].weight: weight must be positive, got -1 (line 12)",
	}
	if len(errs) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(errs[i].Error(), w) {
			t.Errorf("error %d: %q, want %q", i, errs[i], w)
		}
	}
	if !strings.HasPrefix(err.Error(), "5 errors:\n  bogus") {
		t.Fatalf("message:\n%s", err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal + "    health: {check: tcp}\n"))
	if err != nil {
		t.Fatal(err)
	}
	l, p := c.Listeners[0], c.Pools["p"]
	checks := map[string][2]any{
		"log.level":        {c.Log.Level, "info"},
		"log.format":       {c.Log.Format, "json"},
		"access":           {c.Log.AccessEnabled(), true},
		"admin":            {c.Admin.Listen, ""},
		"grace":            {c.ShutdownGrace, 30 * time.Second},
		"storage":          {c.TLS.Storage.File, "/var/lib/l4edge"},
		"inspect":          {l.InspectTimeout, 5 * time.Second},
		"handshake":        {l.HandshakeTimeout, 10 * time.Second},
		"v6 prefix":        {l.IPv6PrefixLength, 64},
		"route name":       {l.Routes[0].Name, "route0"},
		"policy":           {p.Policy, "round_robin"},
		"connect_timeout":  {p.ConnectTimeout, 3 * time.Second},
		"connect_attempts": {p.ConnectAttempts, 3},
		"passive_fall":     {p.PassiveFall, 3},
		"cooldown":         {p.PassiveCooldown, 10 * time.Second},
		"idle":             {p.IdleTimeout, time.Duration(0)},
		"weight":           {p.Backends[0].Weight, 1},
		"pool name":        {p.Name, "p"},
		"health interval":  {p.Health.Interval, 5 * time.Second},
		"health timeout":   {p.Health.Timeout, 2 * time.Second},
		"rise/fall":        {[2]int{p.Health.Rise, p.Health.Fall}, [2]int{2, 3}},
		"health path":      {p.Health.Path, "/"},
	}
	for name, c := range checks {
		if !reflect.DeepEqual(c[0], c[1]) {
			t.Errorf("%s: %v, want %v", name, c[0], c[1])
		}
	}
	if c.KeyLine("listeners[0].listen") != 3 || c.KeyLine("admin.listen") != 0 {
		t.Errorf("KeyLine: %d %d", c.KeyLine("listeners[0].listen"), c.KeyLine("admin.listen"))
	}
}

func TestFullSpecExample(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Listeners[0].Routes[0]
	if !r.Terminates() || r.TLS.Cert != CertACME || c.Pools["ws"].Health.Check != CheckWebSocket || c.Listeners[0].ProxyProtocolIn.Timeout != 3*time.Second {
		t.Fatalf("decoded %+v", r)
	}
}

func TestWarningsAndTermDefaults(t *testing.T) {
	y := strings.Replace(minimal, "      - pool: p", "      - pool: p\n      - name: never\n        pool: p\n      - name: tls\n        match: {sni: [a.test]}\n        tls: {mode: terminate, cert: self_signed}\n        pool: p", 1)
	c, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 2 || !strings.Contains(c.Warnings[0], "listeners[0].routes[1]: unreachable") {
		t.Fatalf("warnings %q", c.Warnings)
	}
	tl := c.Listeners[0].Routes[2].TLS
	if tl.MinVersion != "1.2" || !reflect.DeepEqual(tl.ALPN, []string{"http/1.1"}) {
		t.Fatalf("terminate defaults %+v", tl)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load("/nonexistent/l4edge.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/l4edge.yaml") {
		t.Fatalf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(path, []byte("bogus: 1\n"+minimal), 0o600)
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), "1 error in "+path+":\n  bogus: unknown key (line 1)") {
		t.Fatalf("message: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	full, _ := os.ReadFile("testdata/full.yaml")
	for _, s := range []string{minimal, string(full), "listeners: [\n", "a: &x {b: *x}\n", "pools: {p: }\n", "listeners: [{routes: [{tls: {}}]}]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Parse(in)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && len(Errors(err)) == 0 {
			t.Fatal("error without problems")
		}
	})
}

// The admin API's default reach: loopback addresses and localhost only.
func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9901": true, "127.0.0.2:9901": true, "[::1]:9901": true, "localhost:9901": true,
		"0.0.0.0:9901": false, "[::]:9901": false, ":9901": false, "10.0.0.1:9901": false, "example.com:9901": false, "nonsense": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
