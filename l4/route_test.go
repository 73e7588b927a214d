package l4

import (
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/config"
)

// routesYAML exercises route selection: SNI and ALPN together, SNI alone,
// wildcards, U-label names, ALPN alone, then catch-alls.
const routesYAML = `
pools:
  p:
    backends:
      - address: 127.0.0.1:9
listeners:
  - name: edge
    listen: 127.0.0.1:0
    routes:
      - name: api-h2
        match: {sni: [API.Test.], alpn: [h2]}
        pool: p
      - name: api
        match: {sni: [api.test]}
        pool: p
      - name: wild
        match: {sni: ["*.test", "bücher.example"]}
        pool: p
      - name: idn-wild
        match: {sni: ["*.Bücher.Example."]}
        pool: p
      - name: mqtt
        match: {alpn: [mqtt, x-mqtt]}
        pool: p
      - name: any
        pool: p
      - name: never
        pool: p
  - name: strict
    listen: 127.0.0.1:0
    routes:
      - name: only
        match: {sni: ["*.only.test"], alpn: [h2, http/1.1]}
        pool: p
`

// runtimeFromYAML builds a Runtime the way l4edge does: the file through
// config's loader (defaults and validation), then pools and routes.
func runtimeFromYAML(t *testing.T, y string) *Runtime {
	t.Helper()
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	pools := map[string]*balancer.Pool{}
	for name, pc := range cfg.Pools {
		if pools[name], err = balancer.NewPool(*pc, nil, balancer.Options{Log: zaptest.NewLogger(t)}); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := NewRuntime(cfg, pools, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// listenerNamed is the runtime of the listener called name.
func listenerNamed(t *testing.T, rt *Runtime, name string) *listenerRuntime {
	t.Helper()
	for _, lr := range rt.listeners {
		if lr.cfg.Name == name {
			return lr
		}
	}
	t.Fatalf("no listener %q", name)
	return nil
}

// The server names are as the ClientHello reader hands them over:
// lower-case A-labels without a trailing dot, "" without SNI.
func TestRoutePick(t *testing.T) {
	rt := runtimeFromYAML(t, routesYAML)
	for _, c := range []struct {
		listener, sni string
		alpn          []string
		want          string // "" for no route
	}{
		{"edge", "api.test", []string{"h2"}, "api-h2"},
		{"edge", "api.test", []string{"http/1.1", "h2"}, "api-h2"}, // any one protocol offered
		{"edge", "api.test", nil, "api"},                           // SNI and ALPN both needed
		{"edge", "api.test", []string{"http/1.1"}, "api"},
		{"edge", "api.test", []string{"mqtt"}, "api"}, // first match wins
		{"edge", "www.test", []string{"h2"}, "wild"},
		{"edge", "www.test", nil, "wild"},
		{"edge", "test", nil, "any"},                     // a wildcard needs a label
		{"edge", "a.b.test", nil, "any"},                 // and only one
		{"edge", "a.b.test", []string{"x-mqtt"}, "mqtt"}, // ALPN alone matches any name
		{"edge", "xn--bcher-kva.example", nil, "wild"},   // configured as U-labels
		{"edge", "shop.xn--bcher-kva.example", nil, "idn-wild"},
		{"edge", "a.shop.xn--bcher-kva.example", nil, "any"},
		{"edge", "", []string{"mqtt"}, "mqtt"}, // no SNI: routes without match.sni only
		{"edge", "", []string{"h2"}, "any"},
		{"edge", "", nil, "any"},
		{"edge", "other.example", []string{"acme-tls/1"}, "any"},
		{"strict", "a.only.test", []string{"http/1.1"}, "only"},
		{"strict", "a.only.test", nil, ""}, // no catch-all: no route
		{"strict", "only.test", []string{"h2"}, ""},
		{"strict", "", []string{"h2"}, ""},
	} {
		got := ""
		if r := listenerNamed(t, rt, c.listener).pick(c.sni, c.alpn); r != nil {
			got = r.name
		}
		if got != c.want {
			t.Errorf("%s: SNI %q ALPN %q picked route %q, want %q", c.listener, c.sni, c.alpn, got, c.want)
		}
	}
}

// The catch-all is the first route without a match; a listener with a
// match anywhere reads the ClientHello.
func TestRouteCatchAll(t *testing.T) {
	rt := runtimeFromYAML(t, routesYAML)
	edge, strict := listenerNamed(t, rt, "edge"), listenerNamed(t, rt, "strict")
	if edge.catchAll == nil || edge.catchAll.name != "any" || !edge.inspect || edge.rawAccept {
		t.Errorf("edge: catch-all %v, inspect %v, raw accept %v; want any, true, false", edge.catchAll, edge.inspect, edge.rawAccept)
	}
	if strict.catchAll != nil || !strict.inspect {
		t.Errorf("strict: catch-all %v, inspect %v; want none, true", strict.catchAll, strict.inspect)
	}
	if got := rt.Config.Warnings; len(got) != 1 {
		t.Errorf("warnings %q, want one for the unreachable route", got)
	}
}
