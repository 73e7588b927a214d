package l4

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/config"
)

// harness is an l4 server on 127.0.0.1:0 with the records of every finished
// connection.
type harness struct {
	t       *testing.T
	srv     *Server
	rt      *Runtime
	records chan Record
}

func testListener(name string, routes ...config.Route) config.Listener {
	return config.Listener{
		Name: name, Listen: "127.0.0.1:0",
		InspectTimeout: 2 * time.Second, HandshakeTimeout: 2 * time.Second,
		IPv6PrefixLength: 64, Routes: routes,
	}
}

func testPool(name string, addrs ...string) *config.Pool {
	p := &config.Pool{
		Name: name, Policy: config.PolicyRoundRobin,
		ConnectTimeout: time.Second, ConnectAttempts: 3,
		PassiveFall: 1, PassiveCooldown: 10 * time.Second,
	}
	for _, a := range addrs {
		p.Backends = append(p.Backends, config.Backend{Address: a, Weight: 1})
	}
	return p
}

func testConfig(pools []*config.Pool, listeners ...config.Listener) *config.Config {
	c := &config.Config{Listeners: listeners, Pools: map[string]*config.Pool{}, ShutdownGrace: time.Second}
	for _, p := range pools {
		c.Pools[p.Name] = p
	}
	return c
}

// TestMain runs the tests as l4edge runs: one P more than event loops (see
// startProxy), so the loops wait without giving their Ps back.
func TestMain(m *testing.M) {
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 2) + 1)
	os.Exit(m.Run())
}

// startProxy runs cfg with tlsp (may be nil) until the test ends.
func startProxy(t *testing.T, cfg *config.Config, tlsp TLSProvider) *harness {
	t.Helper()
	h := &harness{t: t, records: make(chan Record, 4096)}
	log := zaptest.NewLogger(t)
	h.srv = NewServer(Options{Log: log, EventLoops: runtime.GOMAXPROCS(0) - 1, OnDone: func(r *Record) {
		select {
		case h.records <- *r:
		default:
		}
	}})
	pools := map[string]*balancer.Pool{}
	for name, pc := range cfg.Pools {
		p, err := balancer.NewPool(*pc, nil, balancer.Options{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		pools[name] = p
	}
	rt, err := NewRuntime(cfg, pools, tlsp)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Apply(rt); err != nil {
		t.Fatal(err)
	}
	h.rt = rt
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
	})
	return h
}

func (h *harness) addr(listener string) string {
	a := h.srv.Addr(listener)
	if a == nil {
		h.t.Fatalf("no listener %q", listener)
	}
	return a.String()
}

// next returns the next finished connection's record.
func (h *harness) next(timeout time.Duration) Record {
	h.t.Helper()
	select {
	case r := <-h.records:
		return r
	case <-time.After(timeout):
		h.t.Fatalf("no connection finished within %s", timeout)
	}
	return Record{}
}

// backend is a real TCP server on 127.0.0.1:0.
type backend struct {
	ln    net.Listener
	name  string
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns int
}

// startBackend serves each connection with handle until the test ends.
func startBackend(t *testing.T, name string, handle func(c *net.TCPConn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, name: name}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns++
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); b.wg.Wait() })
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns
}

// echoHandler copies everything back and passes the FIN on.
func echoHandler(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

// nameHandler answers each line with "NAME LINE".
func nameHandler(name string) func(*net.TCPConn) {
	return func(c *net.TCPConn) { serveLines(name, c) }
}

func serveLines(name string, c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s %s", name, line)
	}
}

// ask sends one line through the proxy and returns the backend's answer.
func ask(t *testing.T, addr, line string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s\n", line)
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("ask %s: %v", addr, err)
	}
	return strings.TrimSpace(reply)
}

// leakCheck fails the test if goroutines or descriptors outlive it.
func leakCheck(t *testing.T) func() {
	t.Helper()
	g0, f0 := runtime.NumGoroutine(), openFDs(t)
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			// Go's own splice pipes (io.Copy between sockets in test
			// backends) sit in a sync.Pool until a GC closes them.
			runtime.GC()
			g, f := runtime.NumGoroutine(), openFDs(t)
			if g <= g0 && f <= f0 {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Fatalf("leak: goroutines %d -> %d, fds %d -> %d\n%s", g0, g, f0, f, buf[:n])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// dialClosed connects to addr and expects the connection to end without a
// byte (a refused or failed connection); what names it in the failure.
func dialClosed(t *testing.T, addr, what string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectEOF(t, c, what)
}

// expectEOF fails unless c ends without a byte within 3 s.
func expectEOF(t *testing.T, c net.Conn, what string) {
	t.Helper()
	if b, err := readAllTimeout(c, 3*time.Second); err != nil || len(b) != 0 {
		t.Fatalf("%s: read %q, %v; want EOF", what, b, err)
	}
}

// readAllTimeout reads until EOF within d.
func readAllTimeout(c net.Conn, d time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return b, fmt.Errorf("no EOF within %s: %w", d, err)
	}
	return b, err
}
