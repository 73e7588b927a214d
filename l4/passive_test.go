package l4

import (
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// Passive health on every relay path: a backend that took bytes and then
// reset ends the connection with backend_reset and stays healthy; one that
// resets before taking a byte is a failure (passive_fall 1 here).
func TestPassiveHealthRule(t *testing.T) {
	readsThenResets := func(c *net.TCPConn) {
		buf := make([]byte, 1)
		_, _ = c.Read(buf)
		_ = c.SetLinger(0)
		c.Close()
	}
	resetsAtOnce := func(c *net.TCPConn) {
		_ = c.SetLinger(0)
		c.Close()
	}
	cert, roots := selfSigned(t, "term.test")
	hello := testpeer.ClientHello(t, &tls.Config{ServerName: "pass.test"})
	// client is what each path's client does: it returns once the
	// connection is over.
	paths := []struct {
		name, listener string
		route          config.Route
		client         func(t *testing.T, addr string, silent bool)
	}{
		{"plain, in-loop connect", "raw", config.Route{Name: "raw", Pool: "p"}, func(t *testing.T, addr string, silent bool) {
			c := testpeer.Dial(t, addr)
			if !silent {
				_, _ = c.Write([]byte("hello"))
			}
			_, _ = readAllTimeout(c, 3*time.Second)
			c.Close()
		}},
		{"passthrough", "tls", config.Route{Name: "pass", Pool: "p", Match: &config.Match{SNI: []string{"pass.test"}}}, func(t *testing.T, addr string, _ bool) {
			c := testpeer.Dial(t, addr)
			_, _ = c.Write(hello)
			_, _ = readAllTimeout(c, 3*time.Second)
			c.Close()
		}},
		{"terminated TLS", "tls", config.Route{Name: "term", Pool: "p", Match: &config.Match{SNI: []string{"term.test"}},
			TLS: &config.RouteTLS{Mode: config.ModeTerminate, Cert: config.CertSelfSigned}}, func(t *testing.T, addr string, silent bool) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: "term.test", RootCAs: roots})
			if err != nil {
				t.Fatalf("tls dial: %v", err)
			}
			if !silent {
				_, _ = c.Write([]byte("hello"))
			}
			_, _ = readAllTimeout(c, 3*time.Second)
			c.Close()
		}},
	}
	cases := []struct {
		name      string
		handle    func(*net.TCPConn)
		silent    bool // the client sends nothing: the backend never gets a byte
		wantClose []closereason.Reason
		wantFails uint64
	}{
		{"reads then resets", readsThenResets, false, []closereason.Reason{closereason.BackendReset}, 0},
		// A reset that comes while the in-loop connect completes is a
		// failed connect.
		{"resets before taking a byte", resetsAtOnce, true, []closereason.Reason{closereason.BackendClosed, closereason.DialFailed}, 1},
	}
	for _, p := range paths {
		for _, tc := range cases {
			if p.route.Name == "pass" && tc.silent {
				continue // passthrough always writes the ClientHello first
			}
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				be := testpeer.Serve(t, tc.handle)
				route := p.route
				l := testListener(p.listener, route)
				h := startProxy(t, testConfig([]*config.Pool{testPool("p", be.Addr())}, l),
					staticTLS{{0, 0}: {Certificates: []tls.Certificate{cert}}})
				p.client(t, h.addr(p.listener), tc.silent)
				rec := h.next(5 * time.Second)
				b := h.rt.Pools["p"].Backends()[0]
				snap := b.Snapshot()
				if !slices.Contains(tc.wantClose, rec.Close) || snap.Failures != tc.wantFails {
					t.Fatalf("close %q (err %v), backend failures %d, state %s; want close in %q, %d failures",
						rec.Close, rec.Err, snap.Failures, snap.State, tc.wantClose, tc.wantFails)
				}
			})
		}
	}
}
