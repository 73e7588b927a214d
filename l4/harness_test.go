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
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// harness is an l4 server on 127.0.0.1:0 with the records of every finished
// connection.
type harness struct {
	t       *testing.T
	srv     *Server
	rt      *Runtime
	records chan Record
}

// testListener is listener name on 127.0.0.1:0 with routes, and 2 s to
// inspect and to hand-shake; its other keys have their defaults.
func testListener(name string, routes ...config.Route) config.Listener {
	l := testpeer.Listener(name, "inspect_timeout: 2s, handshake_timeout: 2s")
	l.Routes = routes
	return l
}

// testPool is pool name of addrs with a 1 s connect timeout, marked down
// after one passive failure; its other keys have their defaults.
func testPool(name string, addrs ...string) *config.Pool {
	return testpeer.Pool(name, "connect_timeout: 1s, passive_fall: 1", addrs...)
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
	return startProxyWith(t, cfg, tlsp, nil)
}

// startProxyWith is startProxy with the server's options changed by with
// (nil: as they are) before it starts.
func startProxyWith(t *testing.T, cfg *config.Config, tlsp TLSProvider, with func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, records: make(chan Record, 4096)}
	log := zaptest.NewLogger(t)
	opts := Options{Log: log, EventLoops: runtime.GOMAXPROCS(0) - 1, OnDone: func(r *Record) {
		select {
		case h.records <- *r:
		default:
		}
	}}
	if with != nil {
		with(&opts)
	}
	h.srv = NewServer(opts)
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
