//go:build linux

package relayloop

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/closereason"
)

// Connector is the Done of a flow whose backend socket may still be
// connecting (StartConnecting). Its methods run in the loop's goroutine,
// between events, so they must not block: a write of a few hundred bytes
// to a fresh socket, a nonblocking connect, a log line are fine.
type Connector interface {
	Done
	// Connected runs once the backend accepted the connection, before any
	// byte moves. It may write a small header (the PROXY header) to
	// backendFD. It returns the flow's idle timeout from now on, or an
	// error, which ends the flow with reason BackendClosed.
	Connected(clientFD, backendFD int) (idle time.Duration, err error)
	// ConnectFailed runs when the connect failed or timed out. It returns
	// the socket of the next attempt, its connect begun, for the loop to
	// wait on (again up to the connect timeout), or the error that ends the
	// flow with reason DialFailed.
	ConnectFailed(cause error) (backendFD int, err error)
}

// StartConnecting is StartFD for a backend socket whose nonblocking connect
// is in progress: the loop waits up to connectTimeout for it to complete,
// asks c for another attempt when it fails, and relays once c.Connected
// says so. Bytes the client sends meanwhile wait in its socket. The flow
// owns both descriptors once StartConnecting succeeds; on an error the
// caller still does.
func (r *Relay) StartConnecting(f *Flow, clientFD, backendFD int, connectTimeout time.Duration, c Connector) error {
	// The backend takes bytes only once connected (the EPOLLOUT that
	// completes the connect says so).
	f.connecting = true
	if err := r.start(f, clientFD, backendFD, connectTimeout, c); err != nil {
		f.connecting = false
		return err
	}
	return nil
}

// connectEvents are the backend events that end a connect in progress:
// writable (connected, or failed with SO_ERROR set), or an error.
const connectEvents = unix.EPOLLOUT | unix.EPOLLERR | unix.EPOLLHUP

// connectDone finishes a connect that an event said has ended.
func (l *loop) connectDone(f *Flow) {
	v, err := unix.GetsockoptInt(f.fds[1], unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && v != 0 {
		err = os.NewSyscallError("connect", unix.Errno(v)) // as net.Dialer says it
	}
	if err != nil {
		l.connectFailed(f, err)
		return
	}
	f.connecting = false
	idle, err := f.done.(Connector).Connected(f.fds[0], f.fds[1])
	l.setIdle(f, idle)
	f.lastActive.Store(time.Now().UnixNano())
	if err != nil {
		l.fail(f, 1, err)
		return
	}
	f.dirs[0].writable = true
}

// connectFailed asks the flow's Connector for another attempt and waits
// for it, or ends the flow when there is none.
func (l *loop) connectFailed(f *Flow, cause error) {
	fd, err := f.done.(Connector).ConnectFailed(cause)
	l.spawned = true // a passive failure may start goroutines (state change hooks)
	if err != nil {
		l.finish(f, closereason.DialFailed, err)
		return
	}
	// The failed socket is the only descriptor of its socket: closing it
	// (after this batch, like a finished flow's) drops its registration.
	l.toClose = append(l.toClose, f.fds[1])
	f.fds[1] = fd
	f.dirs[0].writable = false
	f.dirs[1].readable, f.dirs[1].finSeen = false, false
	f.lastActive.Store(time.Now().UnixNano())
	ev := unix.EpollEvent{Events: flowEvents, Fd: int32(f.id), Pad: 1}
	if err := l.epollCtl(unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.finish(f, closereason.DialFailed, fmt.Errorf("relay: epoll_ctl add: %w", err))
	}
}

// setIdle changes a flow's idle timeout, keeping the count of flows the
// sweep must look at.
func (l *loop) setIdle(f *Flow, idle time.Duration) {
	switch {
	case f.idle > 0 && idle <= 0:
		l.idleN.Add(-1)
	case f.idle <= 0 && idle > 0:
		l.idleN.Add(1)
	}
	f.idle = idle
	switch {
	case idle <= 0:
		l.timers.cancel(f)
	case !l.timers.scheduled(f):
		// Early is fine: the sweep reads the real deadline when it is due.
		l.timers.schedule(f, f.lastActive.Load()+int64(idle))
	}
}

// errConnectTimeout is the cause of a connect that outlived its timeout, in
// net.Dialer's words; errors.Is(err, os.ErrDeadlineExceeded) holds.
var errConnectTimeout = fmt.Errorf("connect timeout: %w", os.ErrDeadlineExceeded)
