package l4

import (
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
	cert, roots := selfSigned(t, "term.test")
	be := testpeer.Serve(t, handle)
	l := testListener("tls", config.Route{Name: "term", Pool: "be",
		TLS: &config.RouteTLS{Mode: config.ModeTerminate, Cert: config.CertSelfSigned}})
	p := testPool("be", be.Addr())
	p.IdleTimeout = idle
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

func echoOnce(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, got, err)
	}
	_ = c.SetDeadline(time.Time{})
}

// Idle terminated connections hold no goroutine in l4edge: 60 of them,
// each proven with two echoes, add one goroutine each in total (the test
// backend's handler), where the goroutine relay adds two more per
// connection.
func TestIdleTerminatedConnectionsParkWithoutGoroutines(t *testing.T) {
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

// Shutdown closes parked terminated connections once the grace is over,
// with close reason shutdown, and leaves no goroutine or descriptor.
func TestShutdownClosesParkedConnections(t *testing.T) {
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
