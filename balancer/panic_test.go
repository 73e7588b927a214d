package balancer

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// TestPassiveFallRun: passive_fall defaults to three: failures in a row take a
// backend out, and a success in between starts the run again.
func TestPassiveFallRun(t *testing.T) {
	cfg := poolOf(config.PolicyRoundRobin, fakeAddrs(1)...)
	cfg.PassiveFall = config.DefaultPassiveFall
	b := mustPool(t, cfg, Options{}).Backends()[0]
	fail := errors.New("refused")
	for i := range 10 {
		b.ReportFailure(fail)
		b.ReportFailure(fail)
		b.ReportSuccess()
		if b.State() != Healthy {
			t.Fatalf("round %d: two failures then a success took the backend out", i)
		}
	}
	for range 3 {
		b.ReportFailure(fail)
	}
	if b.State() != Unhealthy {
		t.Fatalf("three failures in a row left it %s", b.State())
	}
}

// Every backend passively out: the pool is in panic, tries them least
// recently failed first, one attempt each, and logs "pool in panic" once
// per 10 s.
func TestPanicTriesPassivelyFailed(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	addrs := testpeer.Refusing(t, 3)
	cfg := poolOf(config.PolicyRoundRobin, addrs...)
	p := mustPool(t, cfg, Options{Log: zap.New(core)})
	bs := p.Backends()
	base := time.Now().UnixNano()
	for i, order := range []int{2, 0, 1} { // bs[2] failed longest ago
		bs[order].ReportFailure(errors.New("refused"))
		bs[order].lastFail.Store(base + int64(i))
	}
	if !p.InPanic() {
		t.Fatal("every backend out, but not in panic")
	}
	var tried []*Backend
	for range 3 {
		b := p.next(netip.Addr{}, tried, time.Now().UnixNano())
		if b == nil {
			t.Fatalf("panic gave up after %d of 3 backends", len(tried))
		}
		b.Release()
		tried = append(tried, b)
	}
	if tried[0] != bs[2] || tried[1] != bs[0] || tried[2] != bs[1] {
		t.Fatalf("panic order %s %s %s; want least recently failed first: %s %s %s",
			tried[0].Address, tried[1].Address, tried[2].Address, bs[2].Address, bs[0].Address, bs[1].Address)
	}
	if b := p.next(netip.Addr{}, tried, time.Now().UnixNano()); b != nil {
		t.Fatalf("a fourth attempt in a pool of three: %s", b.Address)
	}
	for range 20 {
		start := time.Now()
		_, _, err := p.Dial(context.Background(), netip.Addr{})
		var de *DialError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "connection refused") || time.Since(start) > time.Second {
			t.Fatalf("panic dial of refusing backends: %v after %s; want a refused DialError at once", err, time.Since(start))
		}
	}
	if n := logs.FilterMessage("pool in panic").Len(); n != 1 {
		t.Fatalf("%d 'pool in panic' lines in 20 dials, want 1 per 10 s", n)
	}
}

// Actively down backends stay out while a passively failed one can be
// tried; draining ones are never tried; when all are actively down, all
// (but the draining) are.
func TestPanicSparesActiveDownAndDraining(t *testing.T) {
	cfg := poolOf(config.PolicyRoundRobin, fakeAddrs(4)...)
	cfg.Health = &config.Health{Rise: 2, Fall: 1}
	p := mustPool(t, cfg, Options{})
	bs := p.Backends()
	down := errors.New("check failed")
	bs[0].ReportCheck(down)
	bs[1].ReportCheck(down)
	bs[2].ReportFailure(down) // passive, fall 1 in poolOf
	bs[3].SetDraining(true)
	var tried []*Backend
	for b := p.next(netip.Addr{}, tried, time.Now().UnixNano()); b != nil; b = p.next(netip.Addr{}, tried, time.Now().UnixNano()) {
		b.Release()
		tried = append(tried, b)
	}
	if len(tried) != 1 || tried[0] != bs[2] {
		t.Fatalf("panic tried %v; want only the passively failed %s", addresses(tried), bs[2].Address)
	}
	bs[2].ReportCheck(down) // now every non-draining backend is actively down
	tried = nil
	for b := p.next(netip.Addr{}, tried, time.Now().UnixNano()); b != nil; b = p.next(netip.Addr{}, tried, time.Now().UnixNano()) {
		b.Release()
		tried = append(tried, b)
	}
	if len(tried) != 3 || contains(tried, bs[3]) {
		t.Fatalf("every backend down: panic tried %v; want the three not draining", addresses(tried))
	}
	for _, b := range bs[:3] {
		b.SetDraining(true)
	}
	if p.InPanic() || p.next(netip.Addr{}, nil, time.Now().UnixNano()) != nil {
		t.Fatal("a pool of draining backends is in panic or picked one")
	}
}

// A pool whose every backend drains refuses at once and logs "no healthy
// backend" once.
func TestAllDrainingLogsOnce(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	p := mustPool(t, poolOf(config.PolicyRoundRobin, fakeAddrs(2)...), Options{Log: zap.New(core)})
	for _, b := range p.Backends() {
		b.SetDraining(true)
	}
	for range 50 {
		if _, _, err := p.Dial(context.Background(), netip.Addr{}); !errors.Is(err, ErrNoBackend) {
			t.Fatalf("dial with every backend draining: %v", err)
		}
	}
	if n := logs.FilterMessage("no healthy backend").Len(); n != 1 {
		t.Fatalf("%d 'no healthy backend' lines, want 1", n)
	}
}

func addresses(bs []*Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Address)
	}
	return out
}
