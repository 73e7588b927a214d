package l4

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// slowClients are connections that send a few bytes at once and then one
// byte per second, and note when l4edge closed them.
type slowClients struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed []time.Duration // per connection, from connect to the close it saw
	hung   int             // still open at the limit
	failed int             // could not connect
}

// startSlowloris opens n connections from src to addr. Each writes first
// at once, then one byte of trickle per second (then nothing), and reads
// (discarding) until l4edge closes it or limit passes. It returns once
// every connection is open.
func startSlowloris(t *testing.T, n int, src, addr string, first, trickle []byte, limit time.Duration) *slowClients {
	t.Helper()
	s := &slowClients{}
	var opened sync.WaitGroup
	for range n {
		s.wg.Add(1)
		opened.Add(1)
		go func() {
			defer s.wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", addr)
			opened.Done()
			if err != nil {
				s.mu.Lock()
				s.failed++
				s.mu.Unlock()
				return
			}
			defer c.Close()
			s.trickle(c, first, trickle, limit)
		}()
	}
	opened.Wait()
	return s
}

func (s *slowClients) trickle(c net.Conn, first, trickle []byte, limit time.Duration) {
	start := time.Now()
	if len(first) > 0 {
		_, _ = c.Write(first)
	}
	buf := make([]byte, 4096)
	for i := 0; time.Since(start) < limit; i++ {
		if i < len(trickle) {
			if _, err := c.Write(trickle[i : i+1]); err != nil {
				s.note(time.Since(start))
				return
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(min(time.Second, limit-time.Since(start))))
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // a ServerHello and so on: keep stalling
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				s.note(time.Since(start))
				return
			}
			break
		}
	}
	s.mu.Lock()
	s.hung++
	s.mu.Unlock()
}

func (s *slowClients) note(d time.Duration) {
	s.mu.Lock()
	s.closed = append(s.closed, d)
	s.mu.Unlock()
}

// check waits for every connection and fails unless all were closed
// within bound; it returns the median and slowest time to close.
func (s *slowClients) check(t *testing.T, n int, bound time.Duration) (median, slowest time.Duration) {
	t.Helper()
	s.wg.Wait()
	if s.failed > 0 || s.hung > 0 || len(s.closed) != n {
		t.Fatalf("of %d slow clients %d could not connect, %d were still open at the limit, %d were closed", n, s.failed, s.hung, len(s.closed))
	}
	sort.Slice(s.closed, func(i, j int) bool { return s.closed[i] < s.closed[j] })
	median, slowest = s.closed[n/2], s.closed[n-1]
	if slowest > bound {
		t.Fatalf("slowest of %d slow clients closed after %s (median %s), want within %s", n, slowest, median, bound)
	}
	return median, slowest
}

// closeReasons reads n records and counts their close reasons; ok
// records (the normal clients) are counted under "served".
func closeReasons(h *harness, n int, served func(Record) bool) (map[closereason.Reason]int, time.Duration) {
	h.t.Helper()
	got := map[closereason.Reason]int{}
	var longest time.Duration
	for range n {
		rec := h.next(10 * time.Second)
		if served(rec) {
			got["served"]++
			continue
		}
		got[rec.Close]++
		longest = max(longest, rec.Duration)
	}
	return got, longest
}

// timeServed runs serve k times during an attack, 400ms apart, and fails
// unless each took under 1 s; it returns the slowest.
func timeServed(t *testing.T, k int, serve func()) time.Duration {
	t.Helper()
	var slowest time.Duration
	for range k {
		time.Sleep(400 * time.Millisecond)
		start := time.Now()
		serve()
		slowest = max(slowest, time.Since(start))
	}
	if slowest >= time.Second {
		t.Fatalf("a normal client took %s during the attack, want under 1s", slowest)
	}
	return slowest
}

const (
	slowTimeout = 2 * time.Second // inspect, handshake and PROXY header timeouts
	slowBound   = slowTimeout + 2*time.Second
	slowLimit   = slowBound + time.Second // how long a slow client waits at most
)

// slowAttack is one slowloris case: n connections from 127.0.0.1 send
// first at once, then trickle one byte per second, while serve (a normal
// client, whose records served picks out) runs three times. Every slow
// connection must end within slowBound with close want, its error
// containing because.
type slowAttack struct {
	what           string
	n              int
	h              *harness
	addr           string
	first, trickle []byte
	serve          func()
	served         func(Record) bool
	want           closereason.Reason
	because        string
}

func (a slowAttack) run(t *testing.T) {
	t.Helper()
	a.serve() // warm the relay's caches before the baseline
	a.h.next(3 * time.Second)
	acc := accounted(t)
	slow := startSlowloris(t, a.n, "127.0.0.1", a.addr, a.first, a.trickle, slowLimit)
	normal := timeServed(t, 3, a.serve)
	median, slowest := slow.check(t, a.n, slowBound)
	because := 0
	reasons, longest := closeReasons(a.h, a.n+3, func(r Record) bool {
		if r.Close == a.want && strings.Contains(fmt.Sprint(r.Err), a.because) {
			because++
		}
		return a.served(r)
	})
	if reasons[a.want] != a.n || because != a.n || reasons["served"] != 3 {
		t.Fatalf("%s: close reasons %v (%d with %q), want %d %s and 3 served", a.what, reasons, because, a.because, a.n, a.want)
	}
	t.Logf("slowloris %s: %d conns, timeout %s: closed after median %s, slowest %s (records: longest %s) %v; normal client slowest %s; %s",
		a.what, a.n, slowTimeout, median, slowest, longest, reasons, normal, acc())
}

// askTerm is a normal client of startMixed's terminating route.
func askTerm(t *testing.T, m *mixedPort) func() {
	return func() {
		if reply, _ := askTLS(t, m.h.addr("edge"), "term.test", m.termPool, "hi"); reply != "term-backend hi" {
			t.Fatalf("normal client during the attack: %q", reply)
		}
	}
}

// 300 clients send a ClientHello one byte per second: all are closed with
// inspect_timeout within inspect_timeout + 2 s, while a normal TLS client
// is served in under 1 s.
func TestSlowlorisInspect(t *testing.T) {
	m := startMixed(t, func(l *config.Listener) {
		l.InspectTimeout, l.HandshakeTimeout = slowTimeout, slowTimeout
	})
	slowAttack{
		what: "inspect (1 ClientHello byte/s)", n: 300, h: m.h, addr: m.h.addr("edge"),
		trickle: testpeer.ClientHello(t, &tls.Config{ServerName: "pass.test"}),
		serve:   askTerm(t, m),
		served:  func(r Record) bool { return r.Route == "term" },
		want:    closereason.InspectTimeout, because: "timeout",
	}.run(t)
}

// 300 trusted peers send a PROXY v1 header one byte per second: all are
// closed with proxy_header_timeout within the timeout + 2 s, while a
// trusted peer with a whole header is served in under 1 s.
func TestSlowlorisProxyHeader(t *testing.T) {
	back := testpeer.Lines(t, "back")
	l := withProxyIn(testListener("l", catchAll("p")), "127.0.0.1/32")
	l.ProxyProtocolIn.Timeout = slowTimeout
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, l), nil)
	addr := h.addr("l")
	header := "PROXY TCP4 192.0.2.10 192.0.2.1 40000 443\r\n"
	slowAttack{
		what: "PROXY header (1 byte/s from a trusted peer)", n: 300, h: h, addr: addr,
		trickle: []byte(header),
		serve: func() {
			if reply := ask(t, addr, strings.TrimSuffix(header, "\n")+"\nhi"); reply != "back hi" {
				t.Fatalf("normal client during the attack: %q", reply)
			}
		},
		served: func(r Record) bool { return r.Close == closereason.ClientClosed && r.Backend != "" },
		want:   closereason.ProxyHeaderTimeout, because: "no PROXY header",
	}.run(t)
}

// 200 clients send a whole ClientHello for a terminating route and then
// stall: all are closed with handshake_failed (a timeout) within
// handshake_timeout + 2 s, while a normal TLS client is served in under 1 s.
func TestSlowlorisTerminatingHandshake(t *testing.T) {
	m := startMixed(t, func(l *config.Listener) {
		l.InspectTimeout, l.HandshakeTimeout = slowTimeout, slowTimeout
	})
	slowAttack{
		what: "terminating handshake (stalled after the ClientHello)", n: 200, h: m.h, addr: m.h.addr("edge"),
		first:  testpeer.ClientHello(t, &tls.Config{ServerName: "term.test"}),
		serve:  askTerm(t, m),
		served: func(r Record) bool { return r.Close == closereason.ClientClosed && r.Backend != "" },
		want:   closereason.HandshakeFailed, because: "timeout",
	}.run(t)
}
