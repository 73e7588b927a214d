//go:build linux

package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/relayloop"
)

// The accept stage: each listener's loop takes connections and starts
// their path (doc.go). A listener that reads nothing from its clients
// before the relay is accepted from in the event loops (accept_loop.go);
// the others in a goroutine of their own, with Go's AcceptTCP (the full
// path), or with accept4 once a reload made them raw.

// Accept back-off after a temporary error such as EMFILE, as net/http does:
// 5ms doubling to 1s. The error is logged at most once per acceptLogEvery.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	acceptLogEvery   = 10 * time.Second
)

// accepted is one connection the accept loop took: a *net.TCPConn (full
// path) or a raw descriptor and its peer (raw path), with the event loop
// that accepted it (accept_loop.go; zero: a goroutine did).
type accepted struct {
	client *net.TCPConn
	fd     int
	peer   syscall.Sockaddr
	home   relayloop.Home
}

// acceptBackoff paces the accept loop after failures and logs them once
// per acceptLogEvery, with a count of what was suppressed.
type acceptBackoff struct {
	delay      time.Duration
	lastLog    time.Time // kept across recoveries: a flapping limit logs once per interval
	suppressed int
	logged     bool // a failure was logged and its recovery not yet
}

// serve accepts until the listener is closed. A failing accept (out of
// descriptors, out of memory), or a connection that could not get its
// backend socket for the same reason (starved), backs off instead of
// spinning.
func (l *listener) serve() {
	defer l.srv.accepters.Done()
	if l.acceptor != nil {
		l.serveInLoops()
		return
	}
	var bo acceptBackoff
	for {
		a, err := l.acceptOne()
		if err != nil {
			// A RawConn on a closed file reports poll's "use of closed
			// file", which no exported error matches.
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			bo.failed(l, err)
			continue
		}
		l.accepted.Add(1)
		l.srv.handlers.Add(1)
		l.dispatch(a)
		// A connection served inline has made its backend socket by now,
		// so a recovery is only logged once that worked too.
		if bo.delay > 0 && l.starved.Load() == nil {
			bo.recovered(l)
		}
	}
}

// acceptOne takes the next connection, or reports why it could not: an
// accept error, or the starvation a connection reported.
func (l *listener) acceptOne() (accepted, error) {
	if err := l.takeStarved(); err != nil {
		return accepted{}, err
	}
	if l.rt.Load().rawAccept && l.srv.loops != nil {
		fd, sa, err := l.acceptRaw()
		return accepted{fd: fd, peer: sa}, err
	}
	c, err := l.ln.AcceptTCP()
	return accepted{client: c, fd: -1}, err
}

// takeStarved returns and clears the starvation a connection reported
// (listener.starved), or nil. It reads before it swaps: the swap is a
// locked write to a line every accepting loop shares, and it is needed
// only out of descriptors.
func (l *listener) takeStarved() error {
	if l.starved.Load() == nil {
		return nil
	}
	if p := l.starved.Swap(nil); p != nil {
		return *p
	}
	return nil
}

// dispatch starts a connection's path.
func (l *listener) dispatch(a accepted) {
	switch lr := l.rt.Load(); {
	case a.client != nil:
		go l.srv.serveFull(l, a.client)
	case !lr.rawAccept: // a reload changed the listener while it waited in accept
		go l.srv.serveReloaded(l, a.fd)
	case lr.catchAll.pool.CanStartConnect():
		// Nothing on this path waits (the connect completes in an event
		// loop): no goroutine of its own, no stack to grow. Accepted in
		// a loop, it runs there, and so does an early end's release.
		end := (*conn).endWith
		if a.home.InLoop() {
			end = (*conn).endInLoop
		}
		l.srv.serveRaw(l, lr, a, end)
	default:
		go l.srv.serveRaw(l, lr, a, (*conn).endWith)
	}
}

// failed sleeps the next back-off step and logs the failure when due.
func (bo *acceptBackoff) failed(l *listener, err error) {
	bo.delay = min(max(2*bo.delay, acceptBackoffMin), acceptBackoffMax)
	if now := time.Now(); now.Sub(bo.lastLog) >= acceptLogEvery {
		l.srv.log.Error("accept failed; backing off",
			zap.String("listener", l.rt.Load().cfg.Name), zap.Error(err),
			zap.Duration("backoff", bo.delay), zap.Int("suppressed", bo.suppressed))
		bo.lastLog, bo.suppressed, bo.logged = now, 0, true
	} else {
		bo.suppressed++
	}
	time.Sleep(bo.delay)
}

// recovered ends a back-off once a connection got through.
func (bo *acceptBackoff) recovered(l *listener) {
	if bo.logged {
		l.srv.log.Info("accept recovered", zap.String("listener", l.rt.Load().cfg.Name))
		bo.logged = false
	}
	bo.delay = 0
}

// acceptRaw accepts one connection with accept4 (relayloop.Accept4),
// waiting in Go's netpoller for the listener to be readable. The socket it
// returns is nonblocking and was never registered with the netpoller, so
// the event loop can take it as it is: no netFD, no address lookups, no
// descriptor duplicated and closed. It inherits keepalive and TCP_NODELAY
// from the listener.
func (l *listener) acceptRaw() (int, syscall.Sockaddr, error) {
	fd := -1
	var sa syscall.Sockaddr
	var aerr error
	err := l.raw.Read(func(lfd uintptr) bool {
		fd, sa, aerr = relayloop.Accept4(int(lfd))
		return aerr != unix.EAGAIN
	})
	if err != nil {
		return -1, nil, err
	}
	if aerr != nil {
		return -1, nil, fmt.Errorf("accept4: %w", aerr)
	}
	return fd, sa, nil
}

// newConn is the accept stage's last step, shared by both paths: the
// connection gets its id and start time, is counted as active and is
// registered for shutdown. A connection accepted once shutdown began ends
// at once.
func (s *Server) newConn(l *listener, lr *listenerRuntime, client netip.AddrPort) (*conn, ending) {
	c := &conn{l: l, lr: lr, id: s.nextID.Add(1), start: time.Since(s.epoch), client: client}
	l.active.Add(1)
	if !s.track(c) {
		return c, ending{reason: closereason.Shutdown}
	}
	return c, ending{}
}
