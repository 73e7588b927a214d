package testpeer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/l4edge/l4edge/config"
)

// Config parses yaml as l4edge loads a file (config.Parse: decode, apply
// the defaults, validate), so every key yaml leaves out has its real
// default. An error fails the test.
func Config(t testing.TB, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("testpeer: configuration does not load: %v\n%s", err, yaml)
	}
	return c
}

// mustParse is Config for helpers that have no test at hand. Its YAML is
// the test's own text, so an error is a bug in the test: it panics.
func mustParse(yaml string) *config.Config {
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		panic(fmt.Sprintf("testpeer: configuration does not load: %v\n%s", err, yaml))
	}
	return c
}

// flow appends keys, YAML flow-mapping entries such as
// "connect_timeout: 1s, passive_fall: 1", to the entries in head.
func flow(head, keys string) string {
	if strings.TrimSpace(keys) == "" {
		return "{" + head + "}"
	}
	return "{" + head + ", " + keys + "}"
}

// Pool returns pool name of the backends at addrs (at least one), as
// l4edge would load it: keys are more keys of the pool in YAML flow style
// ("connect_timeout: 1s, passive_fall: 1"), every other key has its
// default. It panics when they do not load.
func Pool(name, keys string, addrs ...string) *config.Pool {
	backends := make([]string, len(addrs))
	for i, a := range addrs {
		backends[i] = fmt.Sprintf("{address: %q}", a)
	}
	pool := flow("backends: ["+strings.Join(backends, ", ")+"]", keys)
	c := mustParse(fmt.Sprintf("listeners: [{listen: \"127.0.0.1:0\", routes: [{pool: %q}]}]\npools: {%q: %s}\n", name, name, pool))
	return c.Pools[name]
}

// Listener returns listener name on 127.0.0.1:0, as l4edge would load it,
// without routes (the caller adds them): keys are more keys of the
// listener in YAML flow style ("inspect_timeout: 2s"), every other key has
// its default. It panics when they do not load.
func Listener(name, keys string) config.Listener {
	l := flow(fmt.Sprintf("name: %q, listen: \"127.0.0.1:0\", routes: [{pool: p}]", name), keys)
	c := mustParse("listeners: [" + l + "]\npools: {p: {backends: [{address: \"127.0.0.1:1\"}]}}\n")
	ln := c.Listeners[0]
	ln.Routes = nil
	return ln
}
