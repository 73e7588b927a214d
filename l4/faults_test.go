package l4

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// usage is what the test process (l4edge's server, its clients and
// backends) holds.
type usage struct {
	fds, goroutines int
	rss             int64
}

func measure(t *testing.T) usage {
	t.Helper()
	return usage{fds: testpeer.OpenFDs(t), goroutines: runtime.NumGoroutine(), rss: testpeer.ProcRSS(t, os.Getpid())}
}

func (u usage) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, RSS %.1f MB", u.fds, u.goroutines, float64(u.rss)/1e6)
}

// accounted starts leakCheck and returns a function that runs it and
// reports the usage before and after.
func accounted(t *testing.T) func() string {
	t.Helper()
	u0 := measure(t)
	done := testpeer.LeakCheck(t)
	return func() string {
		t.Helper()
		done()
		return fmt.Sprintf("test process before: %v; after: %v", u0, measure(t))
	}
}

// roundTrip dials addr from src, sends one byte and waits for its echo; it
// returns how long that took and the open connection.
func roundTrip(src, addr string, timeout time.Duration) (net.Conn, time.Duration, error) {
	start := time.Now()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	b := []byte{'x'}
	if _, err = c.Write(b); err == nil {
		_, err = io.ReadFull(c, b)
	}
	_ = c.SetDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	return c, time.Since(start), nil
}

// keepServing round-trips from src every 20ms until stop is closed; it
// returns how many it made, the slowest, and the first error.
func keepServing(src, addr string, stop <-chan struct{}) func() (int, time.Duration, error) {
	var n int
	var slowest time.Duration
	var firstErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c, d, err := roundTrip(src, addr, 2*time.Second)
			if err != nil {
				firstErr = err
				return
			}
			c.Close()
			n++
			slowest = max(slowest, d)
		}
	}()
	return func() (int, time.Duration, error) { <-done; return n, slowest, firstErr }
}

// max_connections_per_ip 50 and one client opening 500 at once: 50 are
// proxied, 450 closed with limit, and a second client address is served
// throughout.
func TestPerIPFlood(t *testing.T) {
	const flood, limit = 500, 50
	back := testpeer.Echo(t)
	l := testListener("l", catchAll("p"))
	l.MaxConnectionsPerIP = limit
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, l), nil)
	addr := h.addr("l")

	acc := accounted(t)
	stop := make(chan struct{})
	other := keepServing("127.0.0.2", addr, stop)
	time.Sleep(100 * time.Millisecond)
	var mu sync.Mutex
	var held []net.Conn
	refused := 0
	var wg sync.WaitGroup
	gate := make(chan struct{})
	start := time.Now()
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			c, _, err := roundTrip("127.0.0.1", addr, 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused++
				return
			}
			held = append(held, c)
		}()
	}
	close(gate)
	wg.Wait()
	flooded := time.Since(start)
	time.Sleep(200 * time.Millisecond) // the second client keeps going while 50 are held
	close(stop)
	otherN, otherSlowest, otherErr := other()
	for _, c := range held {
		c.Close()
	}
	if len(held) != limit || refused != flood-limit {
		t.Fatalf("of %d connections from one address %d were proxied and %d refused; want %d and %d", flood, len(held), refused, limit, flood-limit)
	}
	if otherErr != nil || otherN < 5 || otherSlowest >= time.Second {
		t.Fatalf("second client address: %d round trips, slowest %s, error %v; want served throughout, each under 1s", otherN, otherSlowest, otherErr)
	}
	reasons := map[closereason.Reason]int{}
	for range flood + otherN {
		rec := h.next(5 * time.Second)
		if rec.Client.Addr().String() == "127.0.0.1" {
			reasons[rec.Close]++
		}
	}
	if reasons[closereason.Limit] != flood-limit || reasons[closereason.ClientClosed] != limit {
		t.Fatalf("records of the flooding address: %v; want %d limit and %d client_closed", reasons, flood-limit, limit)
	}
	t.Logf("per-IP flood: %d at once from 127.0.0.1 in %s: %d proxied, records %v; 127.0.0.2: %d round trips, slowest %s; %s",
		flood, flooded.Round(time.Millisecond), len(held), reasons, otherN, otherSlowest, acc())
}

// sendThenReset is a backend that, after the first byte, writes size
// bytes, waits until the proxy's kernel has acknowledged them all, and
// resets the connection.
func sendThenReset(size int) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return
		}
		if _, err := c.Write(pattern(size)); err != nil {
			return
		}
		rc, _ := c.SyscallConn()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			queued := -1
			_ = rc.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
			if queued == 0 {
				break
			}
		}
		_ = c.SetLinger(0)
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// A backend that sends 1 MiB and then resets: the client gets every byte
// and then a close or reset, plain and over terminated TLS; the record
// says the backend ended it.
func TestBackendSendsThenResets(t *testing.T) {
	const size = 1 << 20
	back := testpeer.Serve(t, sendThenReset(size))
	cert, roots := selfSigned(t, "term.test")
	l := testListener("edge",
		config.Route{Name: "term", Pool: "p", Match: &config.Match{SNI: []string{"term.test"}},
			TLS: &config.RouteTLS{Mode: config.ModeTerminate}},
		catchAll("p"))
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, l),
		staticTLS{{0, 0}: {Certificates: []tls.Certificate{cert}}})
	dialers := map[string]func() (net.Conn, error){
		"plain": func() (net.Conn, error) { return net.Dial("tcp", h.addr("edge")) },
		"terminated TLS": func() (net.Conn, error) {
			return tls.Dial("tcp", h.addr("edge"), &tls.Config{ServerName: "term.test", RootCAs: roots})
		},
	}
	for _, name := range []string{"plain", "terminated TLS"} {
		c, err := dialers[name]()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _ = c.Write([]byte("go"))
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := slowRead(c)
		took := time.Since(start)
		c.Close()
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: after %d bytes the client saw %v, want EOF or a reset", name, len(got), err)
		}
		if !bytes.Equal(got, pattern(size)) {
			t.Fatalf("%s: client got %d bytes, want the backend's %d unchanged", name, len(got), size)
		}
		rec := h.next(5 * time.Second)
		// A reset after delivered bytes is the application's business.
		if rec.Close != closereason.BackendReset || rec.BytesToClient != size {
			t.Fatalf("%s: record close %q (%v), %d bytes to client; want backend_reset and %d", name, rec.Close, rec.Err, rec.BytesToClient, size)
		}
		if snap := h.rt.Pools["p"].Backends()[0].Snapshot(); snap.Failures != 0 || snap.State.String() != "healthy" {
			t.Fatalf("%s: the backend that reset after 1 MiB has %d passive failures and is %s; want none, healthy", name, snap.Failures, snap.State)
		}
		t.Logf("1 MiB then reset (%s): client got %d bytes then %v after %s; record close %s (%v), bytes_to_client %d",
			name, len(got), endedWith(err), took.Round(time.Millisecond), rec.Close, rec.Err, rec.BytesToClient)
	}
}

// slowRead reads to the end in 32 KiB steps 2ms apart: a client slower
// than the backend, so bytes are still queued in l4edge when the reset
// comes.
func slowRead(c net.Conn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := io.ReadFull(c, buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func endedWith(err error) any {
	if err == nil {
		return "EOF"
	}
	return err
}

// A blackholed backend (accepts nothing, refuses nothing) among two, with
// connect_timeout 1s: every new connection is served through the other in
// under connect_timeout + 1 s, and none of the connections already open to
// the healthy backend is cut.
func TestBlackholedBackendAmongTwo(t *testing.T) {
	hole := testpeer.Blackhole(t)
	good := testpeer.Echo(t)
	p := testPool("p", hole, good.Addr())
	p.ConnectTimeout = time.Second
	p.PassiveFall = 1000 // passive health never takes it out: every batch meets it
	h := startProxy(t, testConfig([]*config.Pool{p}, testListener("l", catchAll("p"))), nil)
	addr := h.addr("l")

	acc := accounted(t)
	open := func(n int) ([]net.Conn, time.Duration) {
		var mu sync.Mutex
		var conns []net.Conn
		var slowest time.Duration
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, d, err := roundTrip("127.0.0.1", addr, 5*time.Second)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("a new connection failed: %v", err)
					return
				}
				conns = append(conns, c)
				slowest = max(slowest, d)
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return conns, slowest
	}
	held, heldSlowest := open(20)
	fresh, freshSlowest := open(20)
	for _, c := range fresh {
		c.Close()
	}
	for i, c := range held {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		b := []byte{'y'}
		if _, err := c.Write(b); err != nil {
			t.Fatalf("held connection %d was cut: %v", i, err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("held connection %d was cut: %v", i, err)
		}
		c.Close()
	}
	reasons := map[closereason.Reason]int{}
	for range len(held) + len(fresh) {
		rec := h.next(5 * time.Second)
		if rec.Backend != good.Addr() {
			t.Fatalf("a connection ended on %q: %+v", rec.Backend, rec)
		}
		reasons[rec.Close]++
	}
	if slowest := max(heldSlowest, freshSlowest); slowest >= p.ConnectTimeout+time.Second || reasons[closereason.ClientClosed] != 40 {
		t.Fatalf("slowest new connection %s (want under connect_timeout + 1s), records %v (want 40 client_closed)", slowest, reasons)
	}
	fails := h.rt.Pools["p"].Backend(hole).Snapshot().Failures
	t.Logf("black hole among two, connect_timeout 1s: 2x20 concurrent new connections, slowest %s / %s; 20 held connections intact; records %v; black hole failures %d; %s",
		heldSlowest.Round(time.Millisecond), freshSlowest.Round(time.Millisecond), reasons, fails, acc())
}
