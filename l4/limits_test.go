package l4

import (
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// A backend that never answers the handshake is left after connect_timeout
// and the next backend serves the client, which sees no error.
func TestConnectTimeoutMovesOn(t *testing.T) {
	hole := testpeer.Blackhole(t)
	good := testpeer.Lines(t, "good")
	p := testPool("p", hole, good.Addr())
	p.ConnectTimeout = 300 * time.Millisecond
	h := startProxy(t, testConfig([]*config.Pool{p}, testListener("l", catchAll("p"))), nil)
	start := time.Now()
	if reply := ask(t, h.addr("l"), "hi"); reply != "good hi" {
		t.Fatalf("reply %q", reply)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
		t.Fatalf("took %s; want about the 300ms connect timeout", el)
	}
	if f := h.rt.Pools["p"].Backend(hole).Snapshot().Failures; f != 1 {
		t.Fatalf("black hole failures %d, want 1", f)
	}
}

// With max_connections 5 the sixth concurrent connection is closed at once
// with close: limit; after one closes a new one is served.
func TestMaxConnections(t *testing.T) {
	back := testpeer.Echo(t)
	l := testListener("l", catchAll("p"))
	l.MaxConnections = 5
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, l), nil)
	var open []net.Conn
	for i := range 5 {
		c, err := net.Dial("tcp", h.addr("l"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Prove each is served end to end before opening the next.
		_, _ = c.Write([]byte("x"))
		buf := make([]byte, 1)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("connection %d not served: %v", i, err)
		}
		open = append(open, c)
	}
	sixth, err := net.Dial("tcp", h.addr("l"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	expectEOF(t, sixth, "sixth connection")
	if time.Since(start) > time.Second {
		t.Fatal("sixth connection was not closed at once")
	}
	if rec := h.next(3 * time.Second); rec.Close != closereason.Limit {
		t.Fatalf("record close %q, want limit", rec.Close)
	}
	open[0].Close()
	if rec := h.next(3 * time.Second); rec.Close != closereason.ClientClosed {
		t.Fatalf("record close %q, want client_closed", rec.Close)
	}
	c, err := net.Dial("tcp", h.addr("l"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("y"))
	buf := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(buf); err != nil || buf[0] != 'y' {
		t.Fatalf("connection after a slot freed: %v", err)
	}
	if st := h.srv.Listeners()[0]; st.Refused != 1 {
		t.Fatalf("refused %d, want 1", st.Refused)
	}
}

// Bad peers end only their own connection, with a clear reason, and leave
// no goroutine or descriptor behind; a healthy connection keeps flowing.
func TestBadPeersAreIsolated(t *testing.T) {
	resetter := testpeer.Serve(t, func(c *net.TCPConn) {
		buf := make([]byte, 4)
		_, _ = c.Read(buf)
		_ = c.SetLinger(0) // RST instead of FIN
		c.Close()
	})
	echo := testpeer.Echo(t)
	route := func(name, sni, pool string) config.Route {
		return config.Route{Name: name, Pool: pool, Match: &config.Match{SNI: []string{sni}}}
	}
	l := testListener("l", route("tls", "example.com", "reset"))
	l.InspectTimeout = 300 * time.Millisecond
	plain := testListener("plain", catchAll("echo"))
	h := startProxy(t, testConfig([]*config.Pool{testPool("echo", echo.Addr()), testPool("reset", resetter.Addr())}, l, plain), nil)

	// A long-lived healthy connection that must keep working throughout.
	keeper, err := net.Dial("tcp", h.addr("plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer keeper.Close()
	echoOnce := func() {
		t.Helper()
		_, _ = keeper.Write([]byte("ping"))
		buf := make([]byte, 4)
		_ = keeper.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := keeper.Read(buf); err != nil || string(buf) != "ping" {
			t.Fatalf("healthy connection broke: %q %v", buf, err)
		}
	}
	echoOnce()
	// Each event loop keeps a pipe for reuse once a flow on it moved bytes:
	// warm every loop before the baseline so the cache is not counted as a leak.
	for range 4 {
		if reply := ask(t, h.addr("plain"), "warm"); reply != "warm" {
			t.Fatalf("warm-up reply %q", reply)
		}
		h.next(3 * time.Second)
	}
	done := testpeer.LeakCheck(t)

	cases := []struct {
		name string
		run  func(c net.Conn)
		want closereason.Reason
	}{
		{"silent client", func(c net.Conn) { time.Sleep(600 * time.Millisecond) }, closereason.InspectTimeout},
		{"garbage bytes", func(c net.Conn) { _, _ = c.Write([]byte("\x16\x03\x01\xff\xffgarbage")) }, closereason.InvalidClientHello},
		{"client reset mid-hello", func(c net.Conn) {
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01})
			time.Sleep(50 * time.Millisecond)
			_ = c.(*net.TCPConn).SetLinger(0)
		}, closereason.ClientClosed},
		{"backend reset mid-stream", func(c net.Conn) {
			_, _ = c.Write(testpeer.ClientHello(t, &tls.Config{ServerName: "example.com"}))
			_, _ = readAllTimeout(c, 3*time.Second)
		}, closereason.BackendReset},
		{"plain bytes without a catch-all", func(c net.Conn) { _, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n")) }, closereason.NoRoute},
	}
	for _, tc := range cases {
		c, err := net.Dial("tcp", h.addr("l"))
		if err != nil {
			t.Fatal(err)
		}
		tc.run(c)
		c.Close()
		rec := h.next(5 * time.Second)
		if rec.Close != tc.want {
			t.Fatalf("%s: close %q (err %v), want %q", tc.name, rec.Close, rec.Err, tc.want)
		}
		if tc.want == closereason.BackendReset && (rec.Err == nil || !strings.Contains(rec.Err.Error(), "reset")) {
			t.Fatalf("%s: error %v, want a reset", tc.name, rec.Err)
		}
		echoOnce()
	}
	done()
}

// A connection an event loop refuses as it accepts it (max_connections)
// is reported off the loop: while its report blocks (a slow log sink),
// the flows of that loop still move, and the report comes once unblocked.
func TestRefusedInLoopDoesNotStallFlows(t *testing.T) {
	back := testpeer.Echo(t)
	l := testListener("l", catchAll("p"))
	l.MaxConnections = 1
	release := make(chan struct{})
	var unblock sync.Once
	h := startProxyWith(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, l), nil, func(o *Options) {
		o.EventLoops = 1 // the refused connection and the open one share the loop
		record := o.OnDone
		o.OnDone = func(r *Record) {
			if r.Close == closereason.Limit {
				<-release
			}
			record(r)
		}
	})
	t.Cleanup(func() { unblock.Do(func() { close(release) }) }) // before the proxy's shutdown
	open := testpeer.Dial(t, h.addr("l"))
	defer open.Close()
	testpeer.EchoOnce(t, open, "x")
	dialClosed(t, h.addr("l"), "second connection (over max_connections)")
	// The refused connection's report is blocked now: with it in the
	// loop, this echo would time out.
	testpeer.EchoOnce(t, open, "y")
	if st := h.srv.Listeners()[0]; st.Refused != 1 {
		t.Fatalf("refused %d, want 1", st.Refused)
	}
	unblock.Do(func() { close(release) })
	if rec := h.next(3 * time.Second); rec.Close != closereason.Limit {
		t.Fatalf("record close %q, want limit", rec.Close)
	}
}
