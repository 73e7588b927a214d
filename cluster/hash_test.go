package cluster

import (
	"strings"
	"testing"

	"github.com/l4edge/l4edge/internal/testpeer"
)

const base = `listeners:
  - name: edge
    listen: 127.0.0.1:8443
    routes:
      - pool: p
pools:
  p:
    backends:
      - address: 127.0.0.1:9001
`

func hashOf(t *testing.T, yaml string) string {
	t.Helper()
	return HashConfig(testpeer.Config(t, yaml))
}

func TestHashConfig(t *testing.T) {
	h := hashOf(t, base)
	if h == "" {
		t.Fatal("empty hash")
	}
	same := strings.Replace(base, "127.0.0.1:8443", "10.0.0.2:443", 1) + "admin: {listen: 127.0.0.1:9900}\nlog: {level: debug}\n"
	if got := hashOf(t, same); got != h {
		t.Fatalf("listen, admin and log changed the hash: %s vs %s", got, h)
	}
	if got := hashOf(t, strings.Replace(base, "127.0.0.1:9001", "127.0.0.1:9002", 1)); got == h {
		t.Fatal("a different backend has the same hash")
	}
}
