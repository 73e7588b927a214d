package l4

import (
	"net"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// A reload that turns inspection on while the listener waits in accept4:
// the connection accepted raw is handed to the inspecting path and follows
// the new routes.
func TestRawAcceptThenReloadToInspection(t *testing.T) {
	a := testpeer.Lines(t, "A")
	b := testpeer.Lines(t, "B")
	pools := []*config.Pool{testPool("a", a.Addr()), testPool("b", b.Addr())}
	h := startProxy(t, testConfig(pools, testListener("l", catchAll("a"))), nil)
	addr := h.addr("l")
	if got := ask(t, addr, "1"); got != "A 1" {
		t.Fatalf("before reload: %q", got)
	}
	time.Sleep(50 * time.Millisecond) // the accept goroutine is back in accept4

	sni := config.Route{Name: "x", Pool: "a", Match: &config.Match{SNI: []string{"x.test"}}}
	rt, err := NewRuntime(testConfig(pools, testListener("l", sni, catchAll("b"))), h.rt.Pools, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Apply(rt); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := ask(t, addr, "2"); got != "B 2" {
			t.Fatalf("after reload, connection %d: %q (want the new catch-all)", i, got)
		}
	}
}

// Connections accepted raw that end before the relay (no backend accepts,
// over the limit) leave no descriptor or goroutine behind.
func TestRawAcceptFailuresLeakNothing(t *testing.T) {
	deadAddr := testpeer.Refusing(t, 1)[0]
	back := testpeer.Echo(t)
	limited := testListener("limited", catchAll("echo"))
	limited.MaxConnections = 1
	h := startProxy(t, testConfig(
		[]*config.Pool{testPool("dead", deadAddr), testPool("echo", back.Addr())},
		testListener("dead", catchAll("dead")), limited), nil)
	// Warm both event loops' pipe caches (see TestBadPeersAreIsolated).
	for range 4 {
		if got := ask(t, h.addr("limited"), "warm"); got != "warm" {
			t.Fatalf("warm-up reply %q", got)
		}
		h.next(3 * time.Second)
	}
	done := testpeer.LeakCheck(t)

	for range 5 {
		dialClosed(t, h.addr("dead"), "dial failure")
		// The first refusal marks the only backend down.
		rec := h.next(3 * time.Second)
		if (rec.Close != closereason.DialFailed && rec.Close != closereason.NoBackend) || rec.Client.Addr().String() != "127.0.0.1" {
			t.Fatalf("record %+v, want dial_failed or no_backend from 127.0.0.1", rec)
		}
	}

	hold, err := net.Dial("tcp", h.addr("limited"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = hold.Write([]byte("x"))
	buf := make([]byte, 1)
	_ = hold.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := hold.Read(buf); err != nil {
		t.Fatalf("first connection not served: %v", err)
	}
	dialClosed(t, h.addr("limited"), "over the limit")
	if rec := h.next(3 * time.Second); rec.Close != closereason.Limit {
		t.Fatalf("record %+v, want limit", rec)
	}
	hold.Close()
	h.next(3 * time.Second)
	done()
}
