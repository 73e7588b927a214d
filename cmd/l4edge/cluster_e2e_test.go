//go:build linux

package main

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/tlsterm/redisstore/redistest"
)

// clusterNames are the names the cluster tests obtain.
func clusterNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("n%02d.cluster.test", i))
	}
	return out
}

// pebbleAndRedis starts Pebble, validating TLS-ALPN-01 on 127.0.0.1 at
// the returned port, and a redis-server.
func pebbleAndRedis(t *testing.T) (*pebble, int, *redistest.Server) {
	t.Helper()
	ports := testpeer.FreePorts(t, 2)
	return startPebble(t, ports[0], ports[1]), ports[1], redistest.Start(t, redistest.Options{})
}

// checkOrderedOnce fails unless Pebble saw exactly one order per name.
func checkOrderedOnce(t *testing.T, p *pebble, names []string) {
	t.Helper()
	got := p.ordered()
	counts := map[string]int{}
	for _, n := range got {
		counts[n]++
	}
	for _, n := range names {
		if counts[n] != 1 {
			t.Errorf("%s ordered %d times", n, counts[n])
		}
	}
	if len(got) != len(names) {
		t.Errorf("%d orders for %d names: %v", len(got), len(names), got)
	}
	t.Logf("orders per name: %.3f", float64(len(got))/float64(len(names)))
}

// waitAll waits until every instance serves every name a valid certificate.
func waitAll(t *testing.T, p *pebble, addrs, names []string, within time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for _, a := range addrs {
		for _, n := range names {
			wg.Add(1)
			go func() { defer wg.Done(); waitCertificate(t, p, a, n, within) }()
		}
	}
	wg.Wait()
}

// Three instances on one Redis and one Pebble order each of 20 names once.
// Pebble validates on 127.0.0.1 only, so the orders that B (127.0.0.2) and
// C (127.0.0.3) start are answered by A from the challenge data in Redis.
func TestClusterOrdersOnce(t *testing.T) {
	p, tlsPort, srv := pebbleAndRedis(t)
	names := clusterNames(20)
	start := time.Now()
	addrs, _, procs := cluster3(t, p, tlsPort, srv.Addr, names, "")
	waitAll(t, p, addrs, names, 60*time.Second)
	t.Logf("all %d certificates served on all 3 instances %s after start", len(names), time.Since(start).Round(time.Millisecond))
	checkOrderedOnce(t, p, names)
	started := 0
	for i, pr := range procs {
		n := pr.countLog("certificate obtained successfully")
		t.Logf("instance %d obtained %d certificates, answered %d challenges", i, n, pr.countLog(`"close":"acme_challenge"`))
		started += n
	}
	if started != len(names) {
		t.Errorf("instances obtained %d certificates, want %d", started, len(names))
	}
}

// Pebble validates against B's listener only, while A and C (on other
// addresses, listing the names) start every order; B lists no names and
// answers from the challenge data in Redis.
func TestClusterChallengeElsewhere(t *testing.T) {
	for _, challenge := range []string{"tls-alpn-01", "http-01"} {
		t.Run(challenge, func(t *testing.T) { testChallengeElsewhere(t, challenge) })
	}
}

func testChallengeElsewhere(t *testing.T, challenge string) {
	p, tlsPort, srv := pebbleAndRedis(t)
	names := clusterNames(20)
	withChallenge := func(cfg, ip string) string {
		if challenge == "tls-alpn-01" {
			return cfg
		}
		return strings.Replace(cfg, "    challenges: [tls-alpn-01]\n",
			fmt.Sprintf("    challenges: [http-01]\n    http_listen: %s:%d\n", ip, p.HTTPPort), 1)
	}
	b := fmt.Sprintf("127.0.0.1:%d", tlsPort) // where Pebble validates
	bProc := startL4edge(t, withChallenge(redisConfig(p, b, "", srv.Addr, "", nil, `"*.cluster.test"`), "127.0.0.1"), b)
	var addrs []string
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		addr := net.JoinHostPort(ip, fmt.Sprint(tlsPort))
		addrs = append(addrs, addr)
		startL4edge(t, withChallenge(redisConfig(p, addr, "", srv.Addr, "", names, ""), ip), addr)
	}
	start := time.Now()
	waitAll(t, p, addrs, names, 60*time.Second)
	t.Logf("%d certificates validated at B, served by A and C, %s after start", len(names), time.Since(start).Round(time.Millisecond))
	checkOrderedOnce(t, p, names)
	if n := bProc.countLog(`"close":"acme_challenge"`); challenge == "tls-alpn-01" && n < len(names) {
		t.Errorf("B answered %d challenges, want at least %d", n, len(names))
	}
	if n := bProc.countLog("certificate obtained successfully"); n != 0 {
		t.Errorf("B obtained %d certificates itself", n)
	}
}

// Point 8: with on_demand set, a name a route lists is obtained at start
// (never refused by on_demand.allow), while an unlisted name is governed
// by allow, on the same listener.
func TestListedNamesWithOnDemand(t *testing.T) {
	ports := testpeer.FreePorts(t, 2)
	tlsPort := ports[1]
	p := startPebble(t, ports[0], tlsPort)
	addr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	cfg := acmeConfig(p, addr, "", t.TempDir(), "127.0.0.1:1", `listed.test, "*.tenants.test"`, "tls-alpn-01")
	cfg = insertAfter(t, cfg, "    challenges: [tls-alpn-01]\n", "    on_demand: {allow: [\"*.tenants.test\"]}\n")
	l := startL4edge(t, cfg, addr)
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(p.ordered(), "listed.test") {
		if time.Now().After(deadline) {
			t.Fatalf("listed.test was not ordered at start; orders %v", p.ordered())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitCertificate(t, p, addr, "listed.test", 30*time.Second)
	waitCertificate(t, p, addr, "shop.tenants.test", 30*time.Second)
	if n := l.countLog("on-demand certificate refused", "listed.test"); n != 0 {
		t.Fatalf("listed name refused by on_demand.allow %d times", n)
	}
	if got := p.ordered(); !slices.Equal(got, []string{"listed.test", "shop.tenants.test"}) {
		t.Fatalf("orders %v", got)
	}
}

// insertAfter inserts add after the first anchor in s.
func insertAfter(t *testing.T, s, anchor, add string) string {
	t.Helper()
	i := strings.Index(s, anchor)
	if i < 0 {
		t.Fatalf("%q not in the configuration", anchor)
	}
	return s[:i+len(anchor)] + add + s[i+len(anchor):]
}
