//go:build linux

package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Accept back-off after a temporary error such as EMFILE, as net/http does:
// 5ms doubling to 1s. The error is logged at most once per acceptLogEvery.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	acceptLogEvery   = 10 * time.Second
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

// serve accepts until the listener is closed. A failing accept (out of
// descriptors, out of memory), or a connection that could not get its
// backend socket for the same reason (starved), backs off instead of
// spinning, and is logged once per interval with a count of what was
// suppressed.
func (l *listener) serve() {
	defer l.srv.accepters.Done()
	var delay time.Duration
	var lastLog time.Time // kept across recoveries: a flapping limit logs once per interval
	var suppressed int
	logged := false // a failure was logged and its recovery not yet
	for {
		var c *net.TCPConn
		fd := -1
		var sa syscall.Sockaddr
		var err error
		if starved := l.starved.Swap(nil); starved != nil {
			err = *starved
		} else if l.rt.Load().rawAccept && l.srv.loops != nil {
			fd, sa, err = l.acceptRaw()
		} else {
			c, err = l.ln.AcceptTCP()
		}
		if err != nil {
			// A RawConn on a closed file reports poll's "use of closed
			// file", which no exported error matches.
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			if now := time.Now(); now.Sub(lastLog) >= acceptLogEvery {
				l.srv.log.Error("accept failed; backing off",
					zap.String("listener", l.rt.Load().cfg.Name), zap.Error(err),
					zap.Duration("backoff", delay), zap.Int("suppressed", suppressed))
				lastLog, suppressed, logged = now, 0, true
			} else {
				suppressed++
			}
			time.Sleep(delay)
			continue
		}
		l.accepted.Add(1)
		l.srv.handlers.Add(1)
		switch lr := l.rt.Load(); {
		case c != nil:
			go l.srv.handle(l, c)
		case lr.rawAccept && lr.catchAll.pool.CanStartConnect():
			// Nothing on this path waits (the connect completes in an
			// event loop): no goroutine of its own, no stack to grow.
			l.srv.serveAccepted(l, lr, fd, sa)
		default:
			go l.srv.handleRaw(l, fd, sa)
		}
		// A connection served inline has made its backend socket by now,
		// so a recovery is only logged once that worked too.
		if delay > 0 && l.starved.Load() == nil {
			if logged {
				l.srv.log.Info("accept recovered", zap.String("listener", l.rt.Load().cfg.Name))
				logged = false
			}
			delay = 0
		}
	}
}

// acceptRaw accepts one connection with accept4, waiting in Go's netpoller
// for the listener to be readable. The socket it returns is nonblocking and
// was never registered with the netpoller, so the event loop can take it
// as it is: no netFD, no address lookups, no descriptor duplicated and
// closed. It inherits keepalive and TCP_NODELAY from the listener.
//
// It calls syscall.Accept4, not unix.Accept4: x/sys/unix asks every
// accepted IPv4 or IPv6 socket for SO_PROTOCOL (to tell L2TP sockets
// apart), a system call per connection for nothing here.
func (l *listener) acceptRaw() (int, syscall.Sockaddr, error) {
	fd := -1
	var sa syscall.Sockaddr
	var aerr error
	err := l.raw.Read(func(lfd uintptr) bool {
		for {
			fd, sa, aerr = syscall.Accept4(int(lfd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			switch aerr {
			case unix.EINTR, unix.ECONNABORTED:
				continue // as Go's own accept: try the next one
			case unix.EAGAIN:
				return false
			}
			return true
		}
	})
	if err != nil {
		return -1, nil, err
	}
	if aerr != nil {
		return -1, nil, fmt.Errorf("accept4: %w", aerr)
	}
	return fd, sa, nil
}

// ipLimiter counts open connections per client address (IPv6 per prefix).
type ipLimiter struct {
	mu    sync.Mutex
	count map[netip.Prefix]int
}

func newIPLimiter() *ipLimiter { return &ipLimiter{count: map[netip.Prefix]int{}} }

// clientKey groups an address: IPv4 per address, IPv6 per /bits.
func clientKey(a netip.Addr, v6bits int) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, err := a.Prefix(v6bits)
	if err != nil {
		return netip.PrefixFrom(a, a.BitLen())
	}
	return p
}

// acquire counts a connection for key unless the limit is reached.
func (l *ipLimiter) acquire(key netip.Prefix, limit int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count[key] >= limit {
		return false
	}
	l.count[key]++
	return true
}

func (l *ipLimiter) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count[key] <= 1 {
		delete(l.count, key)
		return
	}
	l.count[key]--
}
