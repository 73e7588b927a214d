//go:build linux

package l4

import (
	"fmt"
	"net"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/relayloop"
)

// The accept stage of a raw listener, in the event loops: the loop woken
// by a connection accepts it and runs its stages at once (dispatch), so a
// connection's setup, from accept4 to the backend's connect, happens in
// one goroutine on one thread, with no accept goroutine parked in Go's
// netpoller and woken for each connection.

// acceptInLoops makes a bound raw listener one the event loops accept
// from. Go's listener is closed, so that its registration in Go's
// netpoller does not wake it for every connection: fd, a duplicate, is the
// socket's only descriptor from then on. It takes tl over.
func (l *listener) acceptInLoops(tl *net.TCPListener) error {
	defer tl.Close()
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var derr error
	if err = rc.Control(func(fd uintptr) { l.fd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("duplicate the listening socket: %w", err)
	}
	// The duplicate shares the socket's O_NONBLOCK, which Go set. The
	// acceptor starts paused: serveInLoops starts it once Apply has made
	// the runtime current.
	l.stop, l.failed = make(chan struct{}), make(chan error, 1)
	l.acceptor = l.srv.loops.Accept(l.fd, l.acceptedInLoop, l.pausedInLoop)
	return nil
}

// acceptedInLoop starts an accepted connection's path, in the event loop
// that accepted it, which relays it too (its home). It returns the
// starvation the connection reported (no backend socket for lack of
// descriptors or memory), which pauses the listener's accepting, as a
// failed accept4 does.
func (l *listener) acceptedInLoop(fd int, peer syscall.Sockaddr, home relayloop.Home) error {
	l.accepted.Add(1)
	l.srv.handlers.Add(1)
	l.dispatch(accepted{fd: fd, peer: peer, home: home})
	if err := l.takeStarved(); err != nil {
		return err
	}
	if l.resumed.Load() != resumedNone && l.resumed.Swap(resumedNone) == resumedLogged {
		l.srv.log.Info("accept recovered", zap.String("listener", l.rt.Load().cfg.Name))
	}
	return nil
}

// States of listener.resumed: since the last pause ended, no connection
// got through yet (resumedQuiet, or resumedLogged when the failure was
// logged and so is its recovery), or one did (resumedNone).
const (
	resumedNone uint32 = iota
	resumedQuiet
	resumedLogged
)

// pausedInLoop hands the cause of a pause (or of a failed Resume) to
// serveInLoops.
func (l *listener) pausedInLoop(err error) {
	select {
	case l.failed <- err:
	default: // one pause at a time: the acceptor pauses once until resumed
	}
}

// serveInLoops is serve for a listener the event loops accept from: it
// backs off after each pause (logging as serve does), then resumes
// accepting, until the listener is closed and its socket released.
func (l *listener) serveInLoops() {
	defer func() { <-l.stop }()
	var bo acceptBackoff
	for {
		if err := l.acceptor.Resume(); err != nil {
			// Out of memory or epoll watches: back off and retry, as
			// after any other failure.
			l.pausedInLoop(fmt.Errorf("register the listening socket in the event loops: %w", err))
		}
		select {
		case <-l.stop:
			return
		case err := <-l.failed:
			switch l.resumed.Swap(resumedNone) {
			case resumedNone:
				bo.delay = 0 // connections got through since the last pause
			case resumedLogged:
				bo.logged = true // its recovery is still to be logged
			}
			bo.failed(l, err)
			if l.closed.Load() {
				return
			}
			// The first connection through logs the recovery (acceptedInLoop).
			state := resumedQuiet
			if bo.logged {
				state, bo.logged = resumedLogged, false
			}
			l.resumed.Store(state)
		}
	}
}
