//go:build linux

package l4

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// listener is one bound socket. It survives reloads that keep its address;
// rt points at its share of the current Runtime.
type listener struct {
	srv  *Server
	addr string
	ln   *net.TCPListener
	// file is a duplicate of ln's descriptor whose RawConn can wait for
	// readability (a listener's own RawConn only supports Control): the
	// raw accept path (see acceptRaw) accepts through it.
	file   *os.File
	raw    syscall.RawConn
	closed atomic.Bool
	rt     atomic.Pointer[listenerRuntime]

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
		Address:  l.ln.Addr().String(),
		Active:   l.active.Load(),
		Accepted: l.accepted.Load(),
		Refused:  l.refused.Load(),
	}
}

// close stops the listener; connections it accepted go on.
func (l *listener) close() {
	l.closed.Store(true)
	l.ln.Close()
	l.file.Close()
}
