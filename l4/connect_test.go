package l4

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/proxyproto"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// A plain listener whose pool sends PROXY headers: the event loop writes
// the header once the connect completes, before any client byte, with the
// client's socket address and the address it connected to; a server-first
// backend's banner still reaches the client.
func TestLoopConnectSendsProxyHeader(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			got := make(chan *proxyproto.Header, 1)
			back := headerBackend(t, got, func(c *net.TCPConn) {
				_, _ = c.Write([]byte("banner\n"))
				testpeer.EchoHandler(c)
			})
			p := testPool("p", back.Addr())
			p.ProxyProtocol = version
			h := startProxy(t, testConfig([]*config.Pool{p}, testListener("l", catchAll("p"))), nil)
			c, err := net.Dial("tcp", h.addr("l"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			banner := make([]byte, 7)
			if _, err := io.ReadFull(c, banner); err != nil || string(banner) != "banner\n" {
				t.Fatalf("banner %q, %v", banner, err)
			}
			hdr := <-got
			if hdr == nil {
				t.Fatal("backend read no PROXY header")
			}
			if want := netip.MustParseAddrPort(c.LocalAddr().String()); hdr.Source != want {
				t.Fatalf("header source %v, want the client's %v", hdr.Source, want)
			}
			if want := netip.MustParseAddrPort(h.addr("l")); hdr.Destination != want {
				t.Fatalf("header destination %v, want the listener's %v", hdr.Destination, want)
			}
			_, _ = c.Write([]byte("ping\n"))
			line := make([]byte, 5)
			if _, err := io.ReadFull(c, line); err != nil || string(line) != "ping\n" {
				t.Fatalf("echo %q, %v", line, err)
			}
		})
	}
}

// When every attempt is refused the client gets a clean EOF, the record
// says dial_failed with the last attempt's error, each tried backend takes
// one passive failure, and nothing is left behind.
func TestLoopConnectAllAttemptsFail(t *testing.T) {
	dead := testpeer.Refusing(t, 3)
	p := testPool("p", dead...)
	p.ConnectAttempts = 2
	h := startProxy(t, testConfig([]*config.Pool{p}, testListener("l", catchAll("p"))), nil)
	done := testpeer.LeakCheck(t)
	dialClosed(t, h.addr("l"), "every attempt refused")
	rec := h.next(3 * time.Second)
	if rec.Close != closereason.DialFailed || rec.Err == nil {
		t.Fatalf("record %+v, want dial_failed with an error", rec)
	}
	msg := rec.Err.Error()
	for _, want := range []string{"connection refused", "pool p", "attempt 2/2"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q does not say %q", msg, want)
		}
	}
	failures := 0
	for _, a := range dead {
		snap := h.rt.Pools["p"].Backend(a).Snapshot()
		if snap.Active != 0 {
			t.Fatalf("backend %s still counts %d connections", a, snap.Active)
		}
		failures += int(snap.Failures)
	}
	if failures != 2 {
		t.Fatalf("%d passive failures, want one per attempt (2)", failures)
	}
	done()
}

// A connection whose backend has not answered yet is not one of that
// backend's connections for close_on_unhealthy (its connect moves on when
// it fails), and shutdown ends it at once, not after connect_timeout.
func TestCloseWhileConnecting(t *testing.T) {
	hole := testpeer.Blackhole(t)
	p := testPool("p", hole)
	p.ConnectTimeout = 20 * time.Second
	h := startProxy(t, testConfig([]*config.Pool{p}, testListener("l", catchAll("p"))), nil)
	c, err := net.Dial("tcp", h.addr("l"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for h.srv.ActiveConnections() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("connection never reached the connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b := h.rt.Pools["p"].Backend(hole)
	if n := h.srv.CloseBackend(b, closereason.BackendDown); n != 0 {
		t.Fatalf("CloseBackend closed %d connections still connecting", n)
	}
	if list := h.srv.Connections(); len(list) != 0 {
		t.Fatalf("/status lists a connection still connecting: %+v", list)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = h.srv.Shutdown(ctx)
	expectEOF(t, c, "connecting at shutdown")
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("closed %s after shutdown began", el)
	}
	if rec := h.next(3 * time.Second); rec.Close != closereason.Shutdown {
		t.Fatalf("record %+v, want %s", rec, closereason.Shutdown)
	}
	if a := b.Snapshot().Active; a != 0 {
		t.Fatalf("backend still counts %d connections", a)
	}
}

// While attempts fail one after another, /status keeps working and lists
// no connection that is not connected.
func TestStatusWhileRetrying(t *testing.T) {
	dead := testpeer.Refusing(t, 3)
	p := testPool("p", dead...)
	p.PassiveFall = 1000 // keep every backend eligible: each connection tries all three
	h := startProxy(t, testConfig([]*config.Pool{p}, testListener("l", catchAll("p"))), nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if list := h.srv.Connections(); len(list) != 0 {
				t.Errorf("listed %+v", list)
				return
			}
		}
	}()
	for range 50 {
		dialClosed(t, h.addr("l"), "every attempt refused")
		if rec := h.next(3 * time.Second); rec.Close != closereason.DialFailed || !strings.Contains(rec.Err.Error(), "connect: connection refused (pool p, attempt 3/3)") {
			t.Fatalf("record %+v", rec)
		}
	}
	close(stop)
	<-done
}
