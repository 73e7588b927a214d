package health

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap/zaptest"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// poolCfg is pool "p" checked by check on path every 50 ms (300 ms timeout,
// rise and fall 2) with one connect attempt of at most 1 s; its other keys
// have their defaults. Its one backend is a placeholder: Check is given
// the address to check.
func poolCfg(check, path string) config.Pool {
	return *testpeer.Pool("p", "connect_timeout: 1s, connect_attempts: 1, passive_fall: 1, "+
		"health: {check: "+check+", path: "+path+", interval: 50ms, timeout: 300ms, rise: 2, fall: 2}", "127.0.0.1:1")
}

// wsHandler echoes WebSockets on /ws and answers 400 to upgrades elsewhere,
// like a backend whose WebSocket endpoint broke while its HTTP still works.
func wsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, _, _ = c.Read(r.Context())
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			http.Error(w, "no websockets here", http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	return mux
}

func TestWebSocketVersusHTTP(t *testing.T) {
	srv := httptest.NewServer(wsHandler())
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	ctx := context.Background()
	if err := Check(ctx, poolCfg(config.CheckWebSocket, "/ws"), addr); err != nil {
		t.Fatalf("websocket on /ws: %v", err)
	}
	if err := Check(ctx, poolCfg(config.CheckHTTP, "/broken"), addr); err != nil {
		t.Fatalf("http on /broken: %v", err)
	}
	err := Check(ctx, poolCfg(config.CheckWebSocket, "/broken"), addr)
	if err == nil || err.Error() != "health check websocket "+addr+": got 400, want 101" {
		t.Fatalf("websocket on /broken: %v", err)
	}
	err = Check(ctx, poolCfg(config.CheckHTTP, "/missing"), addr)
	if err == nil || !strings.Contains(err.Error(), "got status 404, want 200-399") {
		t.Fatalf("http 404: %v", err)
	}
}

// A backend that accepts and never answers fails by timeout, not a hang.
func TestSilentBackendTimesOut(t *testing.T) {
	silent := testpeer.Sink(t)
	for _, kind := range []string{config.CheckHTTP, config.CheckWebSocket, config.CheckTLS} {
		start := time.Now()
		err := Check(context.Background(), poolCfg(kind, "/"), silent.Addr())
		if err == nil || !strings.Contains(err.Error(), "timeout after 300ms") {
			t.Fatalf("%s: %v", kind, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("%s took %s", kind, el)
		}
	}
}

// A backend that requires a PROXY v2 LOCAL header stays healthy.
func TestProxyAwareChecks(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]byte{"v1": []byte("PROXY UNKNOWN\r\n"), "v2": []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")}[version]
		inner := &http.Server{Handler: wsHandler()}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				hdr := make([]byte, len(want))
				if _, err := io.ReadFull(c, hdr); err != nil || !bytes.Equal(hdr, want) {
					c.Close() // a backend that demands PROXY protocol
					continue
				}
				go func() { _ = inner.Serve(&oneConnListener{c: c, addr: ln.Addr()}) }()
			}
		}()
		p := poolCfg(config.CheckWebSocket, "/ws")
		p.ProxyProtocol = version
		if err := Check(context.Background(), p, ln.Addr().String()); err != nil {
			t.Fatalf("%s websocket: %v", version, err)
		}
		p.ProxyProtocol = ""
		if err := Check(context.Background(), p, ln.Addr().String()); err == nil {
			t.Fatalf("%s: a check without the header passed; the test backend is not strict", version)
		}
		ln.Close()
	}
}

// oneConnListener serves exactly one connection.
type oneConnListener struct {
	c    net.Conn
	addr net.Addr
	done bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.done {
		return nil, net.ErrClosed
	}
	l.done = true
	return l.c, nil
}
func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.addr }

// A backend that dies goes unhealthy within fall*interval+timeout, and
// comes back after rise passes once it listens again.
func TestKillAndRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: wsHandler()}
	go func() { _ = srv.Serve(ln) }()
	cfg := poolCfg(config.CheckWebSocket, "/ws")
	cfg.Backends = []config.Backend{{Address: addr, Weight: 1}}
	pool, err := balancer.NewPool(cfg, nil, balancer.Options{Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	checker := Start(pool, Options{Log: zaptest.NewLogger(t)})
	defer checker.Stop()
	b := pool.Backends()[0]
	waitState(t, b, balancer.Healthy, time.Second)
	srv.Close()
	start := time.Now()
	limit := 2*cfg.Health.Interval + cfg.Health.Timeout + 100*time.Millisecond // fall*interval+timeout, plus jitter
	waitState(t, b, balancer.Unhealthy, 2*time.Second)
	if el := time.Since(start); el > limit {
		t.Fatalf("unhealthy after %s, want within %s", el, limit)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	srv2 := &http.Server{Handler: wsHandler()}
	go func() { _ = srv2.Serve(ln2) }()
	defer srv2.Close()
	waitState(t, b, balancer.Healthy, 2*time.Second)
}

func waitState(t *testing.T, b *balancer.Backend, want balancer.State, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for b.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("backend %s is %s, want %s (last error %q)", b.Address, b.State(), want, b.Snapshot().LastError)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
