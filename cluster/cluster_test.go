package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/l4edge/l4edge/tlsterm/redisstore/redistest"
)

type applied struct {
	mu sync.Mutex
	m  map[string]bool
}

func (a *applied) set(pool, backend string, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[pool+"/"+backend] = on
}

func (a *applied) get(k string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.m[k]
}

func member(t *testing.T, addr, id, hash string) (*Cluster, *applied) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	a := &applied{m: map[string]bool{}}
	c := Start(Options{Client: client, Prefix: "t", ID: id, Version: "v1", ConfigHash: func() string { return hash },
		Certificates: func() int { return 2 }, Apply: a.set, Interval: 100 * time.Millisecond, TTL: 500 * time.Millisecond})
	return c, a
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
	}
}

// Members appear with their heartbeats, a silent one expires after its
// TTL, drift names differing hashes, and drains reach every member.
func TestMembersAndDrains(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, appliedA := member(t, srv.Addr, "host/a", "h1")
	b, appliedB := member(t, srv.Addr, "host/b", "h1")
	defer a.Close()
	c, _ := member(t, srv.Addr, "host/c", "h2")
	waitFor(t, "3 members", func() bool { return len(a.Status().Members) == 3 })
	if d := a.Status().Drift; len(d) != 1 || d[0] != "host/c" {
		t.Fatalf("drift %v", d)
	}
	if m := a.Status().Members[0]; m.ID != "host/a" || m.Version != "v1" || m.Certificates != 2 || time.Since(m.LastSeen) > time.Second {
		t.Fatalf("member %+v", m)
	}
	c.Close()
	waitFor(t, "c gone", func() bool { return len(a.Status().Members) == 2 })
	// A member that dies without a word: its heartbeat expires.
	srv.Command("SET", "t:member:ghost", `{"id":"ghost"}`, "PX", "1500")
	srv.Command("ZADD", "t:members", fmt.Sprint(time.Now().UnixMilli()), "ghost")
	waitFor(t, "ghost seen", func() bool { return len(a.Status().Members) == 3 })
	waitFor(t, "ghost expired", func() bool { return len(a.Status().Members) == 2 })

	if err := a.SetDrain(context.Background(), "p", "10.0.0.1:80", true, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "drain on b", func() bool { return appliedB.get("p/10.0.0.1:80") })
	if !appliedA.get("p/10.0.0.1:80") || len(b.Status().Drains) != 1 {
		t.Fatal("drain not applied everywhere")
	}
	if err := b.SetDrain(context.Background(), "p", "10.0.0.1:80", false, false); err != nil {
		t.Fatal(err)
	}
	if !appliedB.get("p/10.0.0.1:80") {
		t.Fatal("a local enable undid the cluster drain")
	}
	if err := b.SetDrain(context.Background(), "p", "10.0.0.1:80", false, true); err != nil {
		t.Fatal(err)
	}
	if err := a.SetDrain(context.Background(), "p", "10.0.0.1:80", true, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "enable on a", func() bool { return !appliedA.get("p/10.0.0.1:80") })
	time.Sleep(300 * time.Millisecond)
	if !appliedB.get("p/10.0.0.1:80") {
		t.Fatal("a cluster enable undid b's local drain")
	}
	b.Close()
}
