//go:build linux

package relayloop

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// echoAcceptor is an Acceptor whose connections the loops relay to an echo
// backend, as l4's raw path does: accepted begins the backend's connect
// and starts the flow, inline.
type echoAcceptor struct {
	t        *testing.T
	r        *Relay
	a        *Acceptor
	addr     string // what clients dial
	backend  string
	accepted atomic.Int64
	refuse   atomic.Int64 // accepted returns an error for the connection with this count
	failures chan error
	once     sync.Once
	released chan struct{}
}

// newEchoAcceptor listens on loopback and accepts in r's loops. The test
// keeps only the duplicate the loops accept from, as l4 does.
func newEchoAcceptor(t *testing.T, r *Relay) *echoAcceptor {
	t.Helper()
	ln := listen(t)
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || fd < 0 {
		t.Fatalf("dup listener: %v", err)
	}
	e := &echoAcceptor{t: t, r: r, addr: ln.Addr().String(), backend: testpeer.Echo(t).Addr(), failures: make(chan error, 4)}
	ln.Close()
	e.refuse.Store(-1)
	e.a = r.Accept(fd, e.onAccepted, func(err error) { e.failures <- err })
	e.released = make(chan struct{})
	t.Cleanup(func() { <-e.close(); unix.Close(fd) })
	if err := e.a.Resume(); err != nil {
		t.Fatal(err)
	}
	return e
}

// close closes the acceptor, once; the channel is closed once the socket
// is released. The socket stays open until the test ends, so a loop that
// still accepted from it would be seen to.
func (e *echoAcceptor) close() <-chan struct{} {
	e.once.Do(func() { e.a.Close(func() { close(e.released) }) })
	return e.released
}

func (e *echoAcceptor) onAccepted(fd int, peer syscall.Sockaddr, home Home) error {
	n := e.accepted.Add(1)
	if _, ok := peer.(*syscall.SockaddrInet4); !ok {
		e.t.Errorf("peer %#v, want an IPv4 address", peer)
	}
	if n == e.refuse.Load() {
		unix.Close(fd)
		return fmt.Errorf("starved at connection %d", n)
	}
	sc := newScripted()
	f := &Flow{}
	f.SetHome(home)
	if err := e.r.StartConnecting(f, fd, startConnect(e.t, e.backend), 5*time.Second, sc); err != nil {
		unix.Close(fd)
		e.t.Errorf("start connecting: %v", err)
	}
	if home.l == nil {
		e.t.Error("accepted was given no home")
	}
	return nil
}

// echo dials the acceptor's address and checks one round trip.
func (e *echoAcceptor) echo(t *testing.T, msg string) error {
	c, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		return fmt.Errorf("echo %q: got %q, %v", msg, buf, err)
	}
	return nil
}

// Connections made at once, more than a turn's batch, are all accepted in
// the loops and relayed.
func TestAcceptInLoops(t *testing.T) {
	e := newEchoAcceptor(t, newRelay(t))
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.echo(t, fmt.Sprintf("hello %d", i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := e.accepted.Load(); got != n {
		t.Fatalf("accepted %d connections, want %d", got, n)
	}
}

// An error from accepted pauses the acceptor and is told to failed once:
// connections then wait in the backlog, untouched, until Resume.
func TestAcceptPausesUntilResumed(t *testing.T) {
	r := newRelay(t)
	e := newEchoAcceptor(t, r)
	e.refuse.Store(2)
	if err := e.echo(t, "first"); err != nil {
		t.Fatal(err)
	}
	if err := e.echo(t, "refused"); err == nil {
		t.Fatal("the refused connection echoed")
	}
	select {
	case err := <-e.failures:
		if err.Error() != "starved at connection 2" {
			t.Fatalf("failed told %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("failed was not told of the pause")
	}
	waiting := make(chan error, 1)
	go func() { waiting <- e.echo(t, "waited") }()
	time.Sleep(100 * time.Millisecond)
	waits := loopWaits(r)
	time.Sleep(200 * time.Millisecond)
	if got := e.accepted.Load(); got != 2 {
		t.Fatalf("accepted %d connections while paused, want 2", got)
	}
	if n := loopWaits(r) - waits; n > 2000 {
		t.Fatalf("the loops waited %d times in 200ms while paused with a connection waiting: they spin", n)
	}
	if err := e.a.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatalf("a connection made while paused, after Resume: %v", err)
	}
	if len(e.failures) != 0 {
		t.Fatalf("failed told %d more times", len(e.failures))
	}
}

// Close under a flood of connects: released runs once no loop can touch
// the socket, after which accepted is never called again.
func TestAcceptCloseUnderLoad(t *testing.T) {
	r := newRelay(t)
	e := newEchoAcceptor(t, r)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
					c.Close()
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-e.close():
	case <-time.After(5 * time.Second):
		t.Fatal("released did not run")
	}
	after, waits := e.accepted.Load(), loopWaits(r)
	time.Sleep(200 * time.Millisecond)
	// Connects keep coming: a listener left in an epoll set would be
	// reported on every wait, and the loops would spin.
	if n := loopWaits(r) - waits; n > 2000 {
		t.Fatalf("the loops waited %d times in 200ms after the acceptor closed: they spin", n)
	}
	close(stop)
	wg.Wait()
	if got := e.accepted.Load(); got != after || after == 0 {
		t.Fatalf("accepted %d before released and %d after; want some, then none", after, got)
	}
	if err := e.a.Resume(); err != nil {
		t.Fatalf("Resume after Close: %v", err)
	}
	for i, l := range r.loops {
		l.mu.Lock()
		taken := l.acceptors[e.a.slot] != nil
		l.mu.Unlock()
		if taken {
			t.Fatalf("loop %d still holds the closed acceptor", i)
		}
	}
}

// loopWaits is how many waits r's loops made so far.
func loopWaits(r *Relay) int64 {
	var n int64
	for _, l := range r.loops {
		n += l.waits.Load()
	}
	return n
}

// A burst of connections that stay open is spread over the loops, though
// the first loop waiting on the listener is woken for all of them.
func TestAcceptSpreadsABurst(t *testing.T) {
	r := newRelay(t)
	e := newEchoAcceptor(t, r)
	const n = 8
	for i := range n {
		c, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := fmt.Sprintf("held %d", i)
		buf := make([]byte, len(msg))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, buf, err)
		}
	}
	for i, l := range r.loops {
		if got := l.open.Load(); got < int64(n/len(r.loops)-1) {
			t.Fatalf("loop %d holds %d of %d open flows; want them spread over %d loops", i, got, n, len(r.loops))
		}
	}
}
