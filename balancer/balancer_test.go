package balancer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// poolOf is pool "p" of addrs with policy, a 1 s connect timeout, marked
// down after one passive failure for an hour; its other keys have their
// defaults.
func poolOf(policy string, addrs ...string) config.Pool {
	return *testpeer.Pool("p", "policy: "+policy+", connect_timeout: 1s, passive_fall: 1, passive_cooldown: 1h", addrs...)
}

// fakeAddrs are backend addresses for pick-only tests (nothing is dialed).
func fakeAddrs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("10.0.0.%d:80", i+1))
	}
	return out
}

func mustPool(t *testing.T, cfg config.Pool, opts Options) *Pool {
	t.Helper()
	p, err := NewPool(cfg, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pick(p *Pool, client netip.Addr) *Backend {
	return p.policy.pick(client, nil, time.Now().UnixNano())
}

// Round-robin is exact, also under concurrent picks.
func TestRoundRobinConcurrent(t *testing.T) {
	p := mustPool(t, poolOf(config.PolicyRoundRobin, fakeAddrs(3)...), Options{})
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			for range 999 {
				local[pick(p, netip.Addr{}).Address]++
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, a := range fakeAddrs(3) {
		if counts[a] != 8*999/3 {
			t.Fatalf("counts %v, want %d each", counts, 8*999/3)
		}
	}
}

// Smooth weighted 3:1 interleaves: never the light one twice in a row.
func TestSmoothWeighted(t *testing.T) {
	cfg := poolOf(config.PolicyWeightedRoundRobin, fakeAddrs(2)...)
	cfg.Backends[0].Weight = 3
	p := mustPool(t, cfg, Options{})
	var seq []string
	for range 40 {
		seq = append(seq, pick(p, netip.Addr{}).Address)
	}
	n := strings.Count(strings.Join(seq, " "), "10.0.0.1:80")
	if n != 30 {
		t.Fatalf("heavy backend %d of 40, want 30", n)
	}
	for i := 1; i < len(seq); i++ {
		if seq[i] == "10.0.0.2:80" && seq[i-1] == seq[i] {
			t.Fatalf("light backend twice in a row at %d: %v", i, seq)
		}
	}
}

func TestLeastConnAndRandomTwo(t *testing.T) {
	for _, policy := range []string{config.PolicyLeastConn, config.PolicyRandomTwo} {
		p := mustPool(t, poolOf(policy, fakeAddrs(3)...), Options{})
		busy := p.Backends()[2]
		busy.active.Store(100)
		for range 300 {
			if b := pick(p, netip.Addr{}); b == busy {
				t.Fatalf("%s picked the busiest backend", policy)
			}
		}
	}
}

// ip_hash: stable per client; removing one of 5 moves only its clients;
// adding a 6th moves about 1/6.
func TestIPHashConsistency(t *testing.T) {
	five := mustPool(t, poolOf(config.PolicyIPHash, fakeAddrs(5)...), Options{})
	four := mustPool(t, poolOf(config.PolicyIPHash, fakeAddrs(5)[:4]...), Options{})
	six := mustPool(t, poolOf(config.PolicyIPHash, fakeAddrs(6)...), Options{})
	movedRemove, movedAdd, removedClients := 0, 0, 0
	const n = 10000
	for i := range n {
		c := netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)})
		a := pick(five, c).Address
		if pick(five, c).Address != a {
			t.Fatal("ip_hash is not stable")
		}
		if a == "10.0.0.5:80" {
			removedClients++
		} else if pick(four, c).Address != a {
			movedRemove++
		}
		if pick(six, c).Address != a {
			movedAdd++
		}
	}
	if movedRemove != 0 {
		t.Fatalf("removing a backend moved %d clients of other backends", movedRemove)
	}
	if f := float64(movedAdd) / n; f < 0.10 || f > 0.25 {
		t.Fatalf("adding a 6th backend moved %.2f of clients, want about 1/6", f)
	}
	if f := float64(removedClients) / n; f < 0.15 || f > 0.25 {
		t.Fatalf("one of five backends got %.2f of clients", f)
	}
}

// Without active checks, a passively failed backend is retried after the
// cool-down; during it the pool is in panic and tries it anyway, and a
// connection that works brings it back.
func TestPassiveCooldown(t *testing.T) {
	addr := testpeer.Refusing(t, 1)[0]
	cfg := poolOf(config.PolicyRoundRobin, addr)
	cfg.PassiveCooldown = 200 * time.Millisecond
	core, logs := observer.New(zap.InfoLevel)
	p := mustPool(t, cfg, Options{Log: zap.New(core)})
	if _, _, err := p.Dial(context.Background(), netip.Addr{}); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	b := p.Backends()[0]
	if b.State() != Unhealthy || !p.InPanic() {
		t.Fatalf("refusing backend: state %s, panic %v; want unhealthy, panic", b.State(), p.InPanic())
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port reused meanwhile: %v", err)
	}
	defer ln.Close()
	c, got, err := p.Dial(context.Background(), netip.Addr{})
	if err != nil {
		t.Fatalf("panic dial during cool-down: %v", err)
	}
	c.Close()
	got.Release()
	if b.State() != Unhealthy || logs.FilterMessage("pool has a healthy backend again").Len() != 0 {
		t.Fatal("a connect alone brought the backend (or the pool) back; only a connection that moved bytes should")
	}
	got.ReportSuccess()
	if b.State() != Healthy || p.InPanic() {
		t.Fatalf("after a working connection: state %s, panic %v", b.State(), p.InPanic())
	}
	if n := logs.FilterMessage("pool has a healthy backend again").Len(); n != 1 {
		t.Fatalf("%d 'pool has a healthy backend again' lines once it is back; want 1", n)
	}
	b.ReportFailure(errors.New("refused"))
	time.Sleep(250 * time.Millisecond)
	if !b.eligible(time.Now().UnixNano()) {
		t.Fatal("not retried after the cool-down")
	}
}

// A reload with the same backends keeps their state; a changed list resets.
func TestReloadKeepsState(t *testing.T) {
	cfg := poolOf(config.PolicyRoundRobin, fakeAddrs(2)...)
	cfg.Health = &config.Health{Rise: 2, Fall: 1}
	p := mustPool(t, cfg, Options{})
	p.Backends()[0].ReportCheck(errors.New("down"))
	if p.Backends()[0].State() != Unhealthy {
		t.Fatal("first failed check did not take the backend out")
	}
	same, _ := NewPool(cfg, p, Options{})
	if same.Backends()[0].State() != Unhealthy {
		t.Fatal("reload with the same backends lost the health state")
	}
	cfg.Backends = cfg.Backends[:1]
	changed, _ := NewPool(cfg, p, Options{})
	if changed.Backends()[0].State() != Healthy {
		t.Fatal("a changed backend list kept old state")
	}
}

// Rise and fall: a flapping backend changes state only per rise/fall.
func TestRiseFall(t *testing.T) {
	cfg := poolOf(config.PolicyRoundRobin, fakeAddrs(1)...)
	cfg.Health = &config.Health{Rise: 2, Fall: 2}
	b := mustPool(t, cfg, Options{}).Backends()[0]
	b.ReportCheck(nil) // first check passes
	fail := errors.New("fail")
	for range 10 {
		b.ReportCheck(fail)
		b.ReportCheck(nil)
		if b.State() != Healthy {
			t.Fatal("alternating pass/fail took a backend out with fall 2")
		}
	}
	b.ReportCheck(fail)
	b.ReportCheck(fail)
	if b.State() != Unhealthy {
		t.Fatal("two failures did not take it out")
	}
	b.ReportCheck(nil)
	if b.State() != Unhealthy {
		t.Fatal("one pass brought it back with rise 2")
	}
	b.ReportCheck(nil)
	if b.State() != Healthy {
		t.Fatal("two passes did not bring it back")
	}
	b.SetDraining(true)
	if b.State() != Draining || b.eligible(time.Now().UnixNano()) {
		t.Fatal("draining backend is eligible")
	}
}
