package l4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// startTerminated runs one listener that terminates TLS for "term.test" and
// relays to a backend served by handle.
func startTerminated(t *testing.T, handle func(*net.TCPConn), idle time.Duration) (*harness, string, *x509.CertPool) {
	t.Helper()
	be := testpeer.Serve(t, handle)
	p := testPool("be", be.Addr())
	p.IdleTimeout = idle
	return startTerminatedPool(t, p)
}

// startTerminatedPool runs one listener that terminates TLS for
// "term.test" and relays to pool p.
func startTerminatedPool(t *testing.T, p *config.Pool) (*harness, string, *x509.CertPool) {
	t.Helper()
	cert, roots := selfSigned(t, "term.test")
	l := testListener("tls", config.Route{Name: "term", Pool: p.Name,
		TLS: &config.RouteTLS{Mode: config.ModeTerminate, Cert: config.CertSelfSigned}})
	h := startProxy(t, testConfig([]*config.Pool{p}, l), staticTLS{{0, 0}: {Certificates: []tls.Certificate{cert}}})
	return h, h.addr("tls"), roots
}

func dialTerm(t *testing.T, addr string, roots *x509.CertPool) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "term.test", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoOnce sends msg and reads it back.
func echoOnce(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	testpeer.EchoOnce(t, c, msg)
}

// Idle terminated connections hold no goroutine in l4edge: 60 of them,
// each proven with two echoes, add one goroutine each in total (the test
// backend's handler), where the goroutine relay adds two more per
// connection.
func TestIdleTerminatedConnectionsHoldNoGoroutine(t *testing.T) {
	_, addr, roots := startTerminated(t, testpeer.EchoHandler, 0)
	echoOnce(t, dialTerm(t, addr, roots), "warm up")
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	const n = 60
	conns := make([]*tls.Conn, n)
	for i := range conns {
		conns[i] = dialTerm(t, addr, roots)
		echoOnce(t, conns[i], fmt.Sprintf("hello %d", i))
	}
	for i := range conns {
		echoOnce(t, conns[i], fmt.Sprintf("again %d", i))
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after-before <= n+n/4 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines %d -> %d with %d idle terminated connections (backend: 1 each)\n%s",
				before, after, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A terminated connection connects to its backend in the event loop: 40
// of them, half sent first to a black-holed backend, hold no goroutine in
// l4edge while those connects wait (a goroutine in Dial would hold one
// each); once connect_timeout ends an attempt, the loop tries the other
// backend and the session relays through it, so every connection echoes
// and ends on the good backend.
func TestTerminatedConnectsInLoop(t *testing.T) {
	hole := testpeer.Blackhole(t)
	good := testpeer.Echo(t)
	p := testPool("be", hole, good.Addr())
	p.ConnectTimeout = 5 * time.Second // the check below comes well before
	p.PassiveFall = 1000               // the black hole stays in: every other connection meets it
	h, addr, roots := startTerminatedPool(t, p)
	holeFailures := func() int { return int(h.rt.Pools["be"].Backend(hole).Snapshot().Failures) }
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()

	const n = 40
	conns := make([]*tls.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
				&tls.Config{ServerName: "term.test", RootCAs: roots})
			if err != nil {
				t.Error(err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The test's echo server holds one goroutine per connection that
	// reached it: n/2 while the others wait. The handshakes' goroutines
	// end soon after the handshakes.
	during := runtime.NumGoroutine() - before
	for during > n/2+n/8 && time.Since(start) < 3*time.Second {
		time.Sleep(20 * time.Millisecond)
		during = runtime.NumGoroutine() - before
	}
	if fails := holeFailures(); fails != 0 {
		t.Fatalf("%d connects to the black hole timed out before the check (%s after the first dial): the check came too late", fails, time.Since(start))
	}
	if during > n/2+n/8 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines grew by %d while %d terminated connections waited for a black hole (echo server: %d)\n%s",
			during, n/2, n/2, buf[:runtime.Stack(buf, true)])
	}
	// Records sent while the connect is still under way wait in the
	// socket and reach the backend once it is connected.
	for i, c := range conns {
		if _, err := fmt.Fprintf(c, "early %02d", i); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(start.Add(p.ConnectTimeout))) // the black hole's attempts end
	for i, c := range conns {
		want := fmt.Sprintf("early %02d", i)
		got := make([]byte, len(want))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
			t.Fatalf("connection %d: echo of what it sent while connecting %q, %v; want %q", i, got, err, want)
		}
		echoOnce(t, c, fmt.Sprintf("hello %d", i))
		c.Close()
	}
	for range n {
		if rec := h.next(5 * time.Second); rec.Backend != good.Addr() || rec.Close != closereason.ClientClosed {
			t.Fatalf("a connection ended on %q with %s, want %s and client_closed: %+v", rec.Backend, rec.Close, good.Addr(), rec)
		}
	}
	if fails := holeFailures(); fails != n/2 {
		t.Fatalf("black hole counted %d failed connects, want %d (every other connection's first attempt)", fails, n/2)
	}
}

// 8 MiB each way through a terminated connection arrives intact (SHA-256),
// and half-close works: the client's close_notify reaches the backend as
// EOF, the backend's last bytes and FIN come back.
func TestTerminatedBulkAndHalfClose(t *testing.T) {
	h, addr, roots := startTerminated(t, testpeer.EchoHandler, 0)
	c := dialTerm(t, addr, roots)
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	go func() {
		_, _ = c.Write(data)
		_ = c.CloseWrite()
	}()
	got, err := readAllTimeout(c, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("got %d bytes back with a different SHA-256", len(got))
	}
	rec := h.next(5 * time.Second)
	if rec.BytesToBackend != int64(len(data)) || rec.BytesToClient != int64(len(data)) || rec.TLS != TLSTerminate {
		t.Fatalf("record: %+v", rec)
	}
}

// A quiet terminated connection ends with idle_timeout; one that keeps
// talking does not.
func TestTerminatedIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	h, addr, roots := startTerminated(t, testpeer.EchoHandler, idle)
	busy := dialTerm(t, addr, roots)
	quiet := dialTerm(t, addr, roots)
	echoOnce(t, quiet, "x")
	start := time.Now()
	for time.Since(start) < 3*idle {
		echoOnce(t, busy, "ping")
		time.Sleep(idle / 4)
	}
	rec := h.next(2 * time.Second)
	if rec.Close != closereason.IdleTimeout || rec.BytesToClient != 1 {
		t.Fatalf("quiet connection: %+v", rec)
	}
	if d := rec.Duration; d < idle || d > idle+time.Second {
		t.Fatalf("quiet connection lasted %s with idle_timeout %s", d, idle)
	}
	echoOnce(t, busy, "still here")
}

// Shutdown closes terminated connections in the event loops once the grace is over,
// with close reason shutdown, and leaves no goroutine or descriptor.
func TestShutdownClosesTerminatedConnections(t *testing.T) {
	cert, roots := selfSigned(t, "term.test")
	be := testpeer.Echo(t)
	check := testpeer.LeakCheck(t)
	l := testListener("tls", config.Route{Name: "term", Pool: "be",
		TLS: &config.RouteTLS{Mode: config.ModeTerminate, Cert: config.CertSelfSigned}})
	h := startProxy(t, testConfig([]*config.Pool{testPool("be", be.Addr())}, l),
		staticTLS{{0, 0}: {Certificates: []tls.Certificate{cert}}})
	var conns []*tls.Conn
	for i := range 5 {
		c := dialTerm(t, h.addr("tls"), roots)
		echoOnce(t, c, fmt.Sprint(i))
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.srv.Shutdown(ctx); err == nil {
		t.Fatal("shutdown with open connections reported no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
	for range conns {
		if rec := h.next(time.Second); rec.Close != closereason.Shutdown {
			t.Fatalf("record after shutdown: %+v", rec)
		}
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("client read after shutdown: %v", err)
		}
		c.Close()
	}
	check()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// heldConn passes its first Write (the ClientHello) through and holds the
// later ones until flush, so the client's Finished and its first data
// records reach the proxy in one segment.
type heldConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	held   bytes.Buffer
}

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writes++
	if h.writes == 1 {
		return h.Conn.Write(p)
	}
	return h.held.Write(p)
}

func (h *heldConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.Conn.Write(h.held.Bytes())
	h.held.Reset()
	return err
}

// A terminated connection whose Finished and first two data records arrive
// together relays both records at once, and later records too: a relay
// that waited for the socket while crypto/tls held records it had read
// ahead would hang here.
func TestTerminatedRecordsArrivingTogether(t *testing.T) {
	m := startMixed(t, nil)
	raw, err := net.DialTimeout("tcp", m.h.addr("edge"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	held := &heldConn{Conn: raw}
	c := tls.Client(held, &tls.Config{ServerName: "term.test", RootCAs: m.termPool, MinVersion: tls.VersionTLS13})
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "one\n")
	fmt.Fprint(c, "two\n")
	if err := held.flush(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, want := range []string{"term-backend one", "term-backend two"} {
		line, err := br.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			t.Fatalf("got %q (%v), want %q", line, err, want)
		}
	}
	for i := range 3 { // later records, one segment each
		fmt.Fprintf(c, "later %d\n", i)
		if err := held.flush(); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("term-backend later %d", i); err != nil || strings.TrimSpace(line) != want {
			t.Fatalf("got %q (%v), want %q", line, err, want)
		}
	}
}
