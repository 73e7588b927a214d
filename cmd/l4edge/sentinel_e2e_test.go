//go:build linux

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/l4edge/l4edge/admin"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/tlsterm/redisstore/redistest"
)

// A primary, a replica and three sentinels; the primary is killed; after
// the failover an on-demand name is still issued and /status shows the
// storage up.
func TestSentinelFailover(t *testing.T) {
	primary := redistest.Start(t, redistest.Options{})
	replica := redistest.Start(t, redistest.Options{ReplicaOf: primary.Addr})
	var sentinels []string
	var first *redistest.Server
	for range 3 {
		s := redistest.Start(t, redistest.Options{Sentinel: true, MasterName: "certs", Monitor: primary.Addr})
		sentinels = append(sentinels, s.Addr)
		if first == nil {
			first = s
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for first.Command("SENTINEL", "replicas", "certs") != "*1" || first.Command("SENTINEL", "sentinels", "certs") != "*2" {
		if time.Now().After(deadline) {
			t.Fatal("the sentinels did not discover the replica and each other")
		}
		time.Sleep(100 * time.Millisecond)
	}

	ports := testpeer.FreePorts(t, 3)
	p := startPebble(t, ports[0], ports[1])
	addr, adm := fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	extra := "      sentinel: {master_name: certs, addresses: [" + strings.Join(sentinels, ", ") + "]}"
	l := startL4edge(t, redisConfig(p, addr, adm, "", extra, nil, `"*.sentinel.test"`), addr)
	waitCertificate(t, p, addr, "one.sentinel.test", 30*time.Second)

	primary.Kill()
	killed := time.Now()
	// The replica drops its clients while it is promoted: poll, and take
	// a dropped query as "not yet".
	for role, _ := replica.TryCommand("ROLE"); role != "*3"; role, _ = replica.TryCommand("ROLE") { // a primary's ROLE has 3 elements, a replica's 5
		if time.Since(killed) > 30*time.Second {
			t.Fatal("no failover within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("failover %s after the primary was killed", time.Since(killed).Round(time.Millisecond))
	waitCertificate(t, p, addr, "two.sentinel.test", 60*time.Second)
	t.Logf("new on-demand certificate %s after the primary was killed", time.Since(killed).Round(time.Millisecond))
	var st admin.StatusDoc
	for getJSON(t, "http://"+adm+"/status", &st); st.Storage == nil || !st.Storage.Up; getJSON(t, "http://"+adm+"/status", &st) {
		if time.Since(killed) > 60*time.Second {
			t.Fatal("/status shows storage down after the failover")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := l.countLog("storage connected", "sentinel"); n != 1 {
		t.Fatalf("storage connected lines naming the sentinels: %d", n)
	}
}
