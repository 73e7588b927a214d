package l4

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// staticTLS is a TLSProvider with fixed configs per (listener, route).
type staticTLS map[[2]int]*tls.Config

func (s staticTLS) ServerConfig(li, ri int) *tls.Config        { return s[[2]int{li, ri}] }
func (staticTLS) IsChallenge(string, []string) bool            { return false }
func (staticTLS) ServeChallenge(net.Conn, time.Duration) error { return nil }

// selfSigned makes a certificate for names and a pool that trusts it.
func selfSigned(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	c := testpeer.Cert(t, names...)
	return c.TLS, c.Pool
}

// reframe splits one handshake message into TLS records of at most size bytes.
func reframe(hello []byte, size int) []byte {
	body := hello[5:] // a single record as crypto/tls sends it
	var out []byte
	for len(body) > 0 {
		n := min(size, len(body))
		out = append(out, 0x16, 0x03, 0x01, byte(n>>8), byte(n))
		out = append(out, body[:n]...)
		body = body[n:]
	}
	return out
}

type mixedPort struct {
	h                  *harness
	termPool, passPool *x509.CertPool
	passBackend        *testpeer.Server
	plain              *testpeer.Server
	termEcho           *testpeer.Server
}

// startMixed runs one listener with a terminating route, a passthrough
// route to a TLS backend with its own certificate, and a plain catch-all.
func startMixed(t *testing.T, tweak func(*config.Listener)) *mixedPort {
	t.Helper()
	m := &mixedPort{}
	termCert, termPool := selfSigned(t, "term.test")
	passCert, passPool := selfSigned(t, "pass.test", "*.pass.test")
	m.termPool, m.passPool = termPool, passPool
	m.termEcho = testpeer.Lines(t, "term-backend")
	m.passBackend = testpeer.Serve(t, func(c *net.TCPConn) {
		testpeer.ServeLines("pass-backend", tls.Server(c, &tls.Config{Certificates: []tls.Certificate{passCert}}))
	})
	m.plain = testpeer.Lines(t, "plain-backend")
	l := testListener("edge",
		config.Route{Name: "term", Pool: "term", Match: &config.Match{SNI: []string{"term.test"}},
			TLS: &config.RouteTLS{Mode: config.ModeTerminate, Cert: config.CertSelfSigned}},
		config.Route{Name: "pass", Pool: "pass", Match: &config.Match{SNI: []string{"*.pass.test", "pass.test"}}},
		config.Route{Name: "rest", Pool: "plain"},
	)
	if tweak != nil {
		tweak(&l)
	}
	cfg := testConfig([]*config.Pool{
		testPool("term", m.termEcho.Addr()), testPool("pass", m.passBackend.Addr()), testPool("plain", m.plain.Addr()),
	}, l)
	tp := staticTLS{{0, 0}: {Certificates: []tls.Certificate{termCert}, NextProtos: []string{"http/1.1"}}}
	m.h = startProxy(t, cfg, tp)
	return m
}

func askTLS(t *testing.T, addr, sni string, roots *x509.CertPool, line string) (string, tls.ConnectionState) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("tls dial %s (sni %s): %v", addr, sni, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s\n", line)
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read via %s: %v", sni, err)
	}
	return strings.TrimSpace(string(buf[:n])), c.ConnectionState()
}

// Each client sees the right certificate (or none) and the right backend.
func TestMixedPort(t *testing.T) {
	m := startMixed(t, nil)
	addr := m.h.addr("edge")

	reply, st := askTLS(t, addr, "term.test", m.termPool, "hi")
	if reply != "term-backend hi" || st.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("terminated: %q alpn %q", reply, st.NegotiatedProtocol)
	}
	rec := m.h.next(5 * time.Second)
	if rec.Route != "term" || rec.TLS != TLSTerminate || rec.SNI != "term.test" || rec.ALPN != "http/1.1" {
		t.Fatalf("terminated record %+v", rec)
	}

	// The passthrough client verifies the backend's own certificate; Go's
	// default ClientHello carries a post-quantum key share and is large.
	reply, st = askTLS(t, addr, "www.pass.test", m.passPool, "hi")
	_ = st
	if reply != "pass-backend hi" {
		t.Fatalf("passthrough reply %q", reply)
	}
	if rec := m.h.next(5 * time.Second); rec.Route != "pass" || rec.TLS != TLSPassthrough || rec.SNI != "www.pass.test" {
		t.Fatalf("passthrough record %+v", rec)
	}
	if n := len(testpeer.ClientHello(t, &tls.Config{ServerName: "pass.test"})); n < 1200 {
		t.Fatalf("default ClientHello is %d bytes; expected a post-quantum key share (> 1200)", n)
	}

	if reply := ask(t, addr, "plain"); reply != "plain-backend plain" {
		t.Fatalf("plain catch-all reply %q", reply)
	}
	if rec := m.h.next(5 * time.Second); rec.Route != "rest" || rec.TLS != TLSNone {
		t.Fatalf("plain record %+v", rec)
	}

	// A TLS name no route matches falls to the catch-all as passthrough.
	if rec := sendRaw(t, addr, testpeer.ClientHello(t, &tls.Config{ServerName: "other.test"}), m.h); rec.Route != "rest" {
		t.Fatalf("unmatched TLS record %+v", rec)
	}
}

// sendRaw writes bytes, closes, and returns the connection's record.
func sendRaw(t *testing.T, addr string, b []byte, h *harness) Record {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write(b)
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = readAllTimeout(c, 5*time.Second)
	c.Close()
	return h.next(5 * time.Second)
}

// A ~9 KiB ClientHello in 100-byte records, sent one byte at a time, is
// routed by its SNI and reaches the passthrough backend byte for byte.
func TestLargeHelloOneByteAtATime(t *testing.T) {
	got := make(chan []byte, 1)
	back := testpeer.Serve(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		got <- b
	})
	l := testListener("edge", config.Route{Name: "big", Pool: "p", Match: &config.Match{SNI: []string{"big.test"}}})
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, l), nil)
	var protos []string
	for i := range 300 {
		protos = append(protos, fmt.Sprintf("proto-%04d-%s", i, strings.Repeat("x", 16)))
	}
	hello := reframe(testpeer.ClientHello(t, &tls.Config{ServerName: "big.test", NextProtos: protos}), 100)
	if len(hello) < 8<<10 {
		t.Fatalf("hello is %d bytes, want about 9 KiB", len(hello))
	}
	c, err := net.Dial("tcp", h.addr("edge"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range hello {
		if _, err := c.Write(hello[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, hello) {
			t.Fatalf("backend got %d bytes, want the %d-byte hello unchanged", len(b), len(hello))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backend got nothing")
	}
	if rec := h.next(5 * time.Second); rec.Route != "big" || rec.SNI != "big.test" || rec.TLS != TLSPassthrough {
		t.Fatalf("record %+v", rec)
	}
}

// Deadlines: a silent client is closed after inspect_timeout; a client that
// stalls mid-handshake after handshake_timeout.
func TestInspectAndHandshakeTimeouts(t *testing.T) {
	m := startMixed(t, func(l *config.Listener) {
		l.Routes = l.Routes[:2] // no catch-all: silence cannot be routed
		l.InspectTimeout = 300 * time.Millisecond
		l.HandshakeTimeout = 400 * time.Millisecond
	})
	addr := m.h.addr("edge")
	start := time.Now()
	c, _ := net.Dial("tcp", addr)
	_, _ = readAllTimeout(c, 5*time.Second)
	c.Close()
	if rec := m.h.next(5 * time.Second); rec.Close != closereason.InspectTimeout || time.Since(start) > 2*time.Second {
		t.Fatalf("silent client: %+v after %s", rec, time.Since(start))
	}
	// Send a ClientHello for the terminating route and then nothing.
	c, _ = net.Dial("tcp", addr)
	start = time.Now()
	_, _ = c.Write(testpeer.ClientHello(t, &tls.Config{ServerName: "term.test"}))
	_, _ = readAllTimeout(c, 5*time.Second)
	c.Close()
	rec := m.h.next(5 * time.Second)
	if rec.Close != closereason.HandshakeFailed || !strings.Contains(fmt.Sprint(rec.Err), "timeout") {
		t.Fatalf("stalled handshake: %+v", rec)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 2*time.Second {
		t.Fatalf("stalled handshake closed after %s, want about 400ms", el)
	}
}

// Malformed ClientHellos are closed with invalid_client_hello, within the
// deadline, and 1,000 handshakes that never finish leave nothing behind
// while another connection keeps flowing.
func TestBadHellosAndStalledHandshakes(t *testing.T) {
	m := startMixed(t, func(l *config.Listener) {
		l.Routes = l.Routes[:2]
		l.InspectTimeout = time.Second
	})
	addr := m.h.addr("edge")
	good := testpeer.ClientHello(t, &tls.Config{ServerName: "pass.test"})
	badSNI := bytes.Replace(good, []byte("pass.test"), []byte("pa\x00s.test"), 1)
	bad := map[string][]byte{
		"record over 16 KiB": {0x16, 0x03, 0x01, 0x48, 0x01, 0x01},
		"not a handshake":    append([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00}, good...),
		"invalid SNI":        badSNI,
		"truncated":          good[:len(good)/2],
	}
	for name, b := range bad {
		rec := sendRaw(t, addr, b, m.h)
		want := closereason.InvalidClientHello
		if name == "truncated" {
			want = closereason.ClientClosed
		}
		if rec.Close != want {
			t.Fatalf("%s: close %q (%v), want %q", name, rec.Close, rec.Err, want)
		}
	}

	done := testpeer.LeakCheck(t)
	const stalled = 1000
	var wg sync.WaitGroup
	conns := make([]net.Conn, 0, stalled)
	var mu sync.Mutex
	for i := 0; i < stalled; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			_, _ = c.Write(good[:100]) // a hello that never completes
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if reply, _ := askTLS(t, addr, "term.test", m.termPool, "still"); reply != "term-backend still" {
		t.Fatalf("a good connection during the stall: %q", reply)
	}
	timeouts := 0
	for i := 0; i < len(conns)+1; i++ {
		if rec := m.h.next(10 * time.Second); rec.Close == closereason.InspectTimeout {
			timeouts++
		}
	}
	if timeouts != len(conns) || len(conns) != stalled {
		t.Fatalf("%d of %d stalled handshakes closed by inspect_timeout", timeouts, len(conns))
	}
	for _, c := range conns {
		c.Close()
	}
	done()
}
