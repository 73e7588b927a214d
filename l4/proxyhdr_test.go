package l4

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/proxyproto"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// headerBackend reads a PROXY header from each connection, reports it, and
// then runs after (echo by default).
func headerBackend(t *testing.T, got chan<- *proxyproto.Header, after func(c *net.TCPConn)) *testpeer.Server {
	return testpeer.Serve(t, func(c *net.TCPConn) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := proxyproto.Read(c)
		_ = c.SetReadDeadline(time.Time{})
		if err != nil {
			got <- nil
			return
		}
		got <- h
		if after != nil {
			after(c)
			return
		}
		testpeer.EchoHandler(c)
	})
}

func withProxyIn(l config.Listener, trusted ...string) config.Listener {
	l.ProxyProtocolIn = &config.ProxyProtocolIn{Trusted: trusted, Timeout: 300 * time.Millisecond}
	return l
}

// An untrusted peer's forged header is refused and never reaches a backend;
// a trusted peer that sends no header in time is closed with a reason.
func TestProxyHeaderTrust(t *testing.T) {
	back := testpeer.Echo(t)
	l := withProxyIn(testListener("l", catchAll("p")), "127.0.0.2/32")
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, l), nil)
	forged := (&proxyproto.Header{Version: 1, Command: proxyproto.Proxy,
		Source: netip.MustParseAddrPort("203.0.113.9:4444"), Destination: netip.MustParseAddrPort("198.51.100.1:443")}).AppendV1(nil)

	var c net.Conn = testpeer.DialFrom(t, "127.0.0.1", h.addr("l")) // not trusted
	_, _ = c.Write(forged)
	_, _ = readAllTimeout(c, 3*time.Second)
	c.Close()
	if rec := h.next(3 * time.Second); rec.Close != closereason.UntrustedProxy || rec.Client.Addr().String() != "127.0.0.1" {
		t.Fatalf("forged header: %+v", rec)
	}
	if back.Conns() != 0 {
		t.Fatal("a forged header reached the backend")
	}

	c = testpeer.DialFrom(t, "127.0.0.2", h.addr("l")) // trusted, silent
	start := time.Now()
	_, _ = readAllTimeout(c, 3*time.Second)
	c.Close()
	if rec := h.next(3 * time.Second); rec.Close != closereason.ProxyHeaderTimeout || time.Since(start) > 2*time.Second {
		t.Fatalf("silent trusted peer: %+v", rec)
	}

	// An untrusted peer without a header is served with its own address.
	c = testpeer.DialFrom(t, "127.0.0.1", h.addr("l"))
	_, _ = c.Write([]byte("plain"))
	_ = c.(*net.TCPConn).CloseWrite()
	if b, _ := readAllTimeout(c, 3*time.Second); string(b) != "plain" {
		t.Fatalf("untrusted plain client got %q", b)
	}
	c.Close()
	if rec := h.next(3 * time.Second); rec.Close != closereason.ClientClosed {
		t.Fatalf("plain untrusted client: %+v", rec)
	}
}

// A server-first backend behind PROXY v2 sees the header first, and the
// client still gets its banner; the client address is the one learned
// from the incoming header, and a v2 LOCAL keeps the socket address.
func TestServerFirstBackendWithV2(t *testing.T) {
	got := make(chan *proxyproto.Header, 4)
	back := headerBackend(t, got, func(c *net.TCPConn) {
		_, _ = c.Write([]byte("220 smtp ready\r\n"))
		_, _ = io.Copy(io.Discard, c)
	})
	p := testPool("p", back.Addr())
	p.ProxyProtocol = "v2"
	l := withProxyIn(testListener("l", catchAll("p")), "127.0.0.1/32")
	h := startProxy(t, testConfig([]*config.Pool{p}, l), nil)

	c, err := net.Dial("tcp", h.addr("l"))
	if err != nil {
		t.Fatal(err)
	}
	in := &proxyproto.Header{Version: 2, Command: proxyproto.Proxy,
		Source: netip.MustParseAddrPort("[2001:db8::7]:5555"), Destination: netip.MustParseAddrPort("[2001:db8::1]:25")}
	_, _ = c.Write(in.Append(nil))
	banner := make([]byte, 16)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, banner); err != nil || string(banner) != "220 smtp ready\r\n" {
		t.Fatalf("banner %q %v", banner, err)
	}
	c.Close()
	sent := <-got
	if sent == nil || sent.Source != in.Source || sent.Destination != in.Destination {
		t.Fatalf("backend got %+v, want the client's %v", sent, in.Source)
	}
	if rec := h.next(3 * time.Second); rec.Client != in.Source {
		t.Fatalf("access record client %v", rec.Client)
	}

	// LOCAL (a cloud health check): proxied with the socket address.
	c, _ = net.Dial("tcp", h.addr("l"))
	_, _ = c.Write((&proxyproto.Header{Version: 2, Command: proxyproto.Local}).Append(nil))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, banner); err != nil {
		t.Fatalf("LOCAL: %v", err)
	}
	c.Close()
	if sent := <-got; sent == nil || sent.Source.Addr().String() != "127.0.0.1" {
		t.Fatalf("LOCAL: backend got %+v", sent)
	}
}

// TLVs: a terminated route sends ALPN, AUTHORITY and SSL; a passthrough
// route sends AUTHORITY (and ALPN when only one was offered), no SSL.
func TestProxyV2TLVs(t *testing.T) {
	got := make(chan *proxyproto.Header, 4)
	back := headerBackend(t, got, nil)
	p := testPool("p", back.Addr())
	p.ProxyProtocol = "v2"
	cert, roots := selfSigned(t, "term.test", "pass.test")
	l := testListener("edge",
		config.Route{Name: "term", Pool: "p", Match: &config.Match{SNI: []string{"term.test"}},
			TLS: &config.RouteTLS{Mode: config.ModeTerminate}},
		config.Route{Name: "pass", Pool: "p", Match: &config.Match{SNI: []string{"pass.test"}}})
	h := startProxy(t, testConfig([]*config.Pool{p}, l), staticTLS{{0, 0}: {Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}})

	reply, _ := askTLS(t, h.addr("edge"), "term.test", roots, "hi")
	if reply != "hi" {
		t.Fatalf("terminated echo %q", reply)
	}
	term := <-got
	if term == nil || string(term.ALPN) != "http/1.1" || term.Authority != "term.test" || term.SSL == nil ||
		term.SSL.Client&proxyproto.ClientSSL == 0 || term.SSL.Version != "TLSv1.3" {
		t.Fatalf("terminated TLVs %+v (ssl %+v)", term, term.SSL)
	}

	c, _ := net.Dial("tcp", h.addr("edge"))
	_, _ = c.Write(testpeer.ClientHello(t, &tls.Config{ServerName: "pass.test", NextProtos: []string{"h2"}}))
	pass := <-got
	c.Close()
	if pass == nil || pass.Authority != "pass.test" || string(pass.ALPN) != "h2" || pass.SSL != nil {
		t.Fatalf("passthrough TLVs %+v", pass)
	}
}

// Two clients behind one trusted proxy are counted apart by
// max_connections_per_ip.
func TestPerIPLimitBehindProxy(t *testing.T) {
	back := testpeer.Echo(t)
	l := withProxyIn(testListener("l", catchAll("p")), "127.0.0.1/32")
	l.MaxConnectionsPerIP = 1
	l.ProxyProtocolIn.Timeout = 2 * time.Second
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, l), nil)
	open := func(src string) net.Conn {
		c, err := net.Dial("tcp", h.addr("l"))
		if err != nil {
			t.Fatal(err)
		}
		hdr := &proxyproto.Header{Version: 2, Command: proxyproto.Proxy,
			Source: netip.MustParseAddrPort(src), Destination: netip.MustParseAddrPort("192.0.2.1:443")}
		_, _ = c.Write(append(hdr.Append(nil), 'x'))
		return c
	}
	served := func(c net.Conn) bool {
		b := make([]byte, 1)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _ := c.Read(b)
		return n == 1
	}
	a := open("198.51.100.10:1000")
	defer a.Close()
	b := open("198.51.100.11:1000")
	defer b.Close()
	if !served(a) || !served(b) {
		t.Fatal("two different clients behind one proxy were not both served")
	}
	a2 := open("198.51.100.10:1001")
	defer a2.Close()
	if served(a2) {
		t.Fatal("a second connection from the same client passed max_connections_per_ip 1")
	}
	if rec := h.next(3 * time.Second); rec.Close != closereason.Limit || rec.Client.Addr().String() != "198.51.100.10" {
		t.Fatalf("limit record %+v", rec)
	}
}
