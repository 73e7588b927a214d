//go:build linux

package l4

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/relayloop"
)

// listener is one bound socket. It survives reloads that keep its address;
// rt points at its share of the current Runtime.
//
// It accepts in one of two ways, chosen when it is bound. A listener that
// reads nothing from its clients (raw, see listenerRuntime.rawAccept) is
// accepted from in the event loops (acceptor; accept_loop.go): ln is then
// closed and fd is the socket's only descriptor. Any other is accepted from
// by serve's goroutine, through ln (the full path) or, after a reload made
// it raw, through file.
type listener struct {
	srv   *Server
	addr  string   // as configured
	bound net.Addr // the socket's address
	ln    *net.TCPListener
	// file is a duplicate of ln's descriptor whose RawConn can wait for
	// readability (a listener's own RawConn only supports Control): the
	// raw accept path (see acceptRaw) accepts through it.
	file *os.File
	raw  syscall.RawConn
	// In the event loops: the listening socket and its acceptor; stop is
	// closed when the listener is, failed carries a pause's cause to serve.
	fd       int
	acceptor *relayloop.Acceptor
	stop     chan struct{}
	failed   chan error
	resumed  atomic.Uint32 // what the first connection after a pause does (accept_loop.go)
	closed   atomic.Bool
	rt       atomic.Pointer[listenerRuntime]

	active   atomic.Int64
	accepted atomic.Uint64
	refused  atomic.Uint64 // closed at once by max_connections or per-IP limits
	perIP    *ipLimiter
	// starved is set by a connection whose backend socket could not be
	// made for lack of local resources (descriptors, memory): serve backs
	// off on it as on a failed accept. Out of descriptors, accept4 itself
	// may still succeed, taking the last descriptor, while the backend
	// socket cannot; accepting on would only close connection after
	// connection as fast as clients open them.
	starved atomic.Pointer[error]
}

// ListenerStats are one listener's counters for /status.
type ListenerStats struct {
	Name     string
	Address  string
	Active   int64
	Accepted uint64
	Refused  uint64
}

func (l *listener) stats() ListenerStats {
	return ListenerStats{
		Name:     l.rt.Load().cfg.Name,
		Address:  l.bound.String(),
		Active:   l.active.Load(),
		Accepted: l.accepted.Load(),
		Refused:  l.refused.Load(),
	}
}

// waitReleased returns once a closed listener's socket is closed: at once
// for one accepted from by its goroutine, whose close is synchronous.
func (l *listener) waitReleased() {
	if l.stop != nil {
		<-l.stop
	}
}

// close stops the listener; connections it accepted go on. For a listener
// the event loops accept from, the socket is closed a moment later
// (waitReleased).
func (l *listener) close() {
	if l.closed.Swap(true) {
		return
	}
	if l.acceptor != nil {
		// serve returns (and StopAccepting with it) once no loop can
		// touch fd any more and it is closed.
		l.acceptor.Close(func() {
			unix.Close(l.fd)
			close(l.stop)
		})
		return
	}
	l.ln.Close()
	l.file.Close()
}
