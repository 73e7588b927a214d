package l4

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
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
	rt   atomic.Pointer[listenerRuntime]

	active   atomic.Int64
	accepted atomic.Uint64
	refused  atomic.Uint64 // closed at once by max_connections or per-IP limits
	perIP    *ipLimiter
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

// serve accepts until the listener is closed. A failing accept (out of
// descriptors, out of memory) backs off instead of spinning, and is logged
// once per interval with a count of what was suppressed.
func (l *listener) serve() {
	defer l.srv.accepters.Done()
	var delay time.Duration
	var lastLog time.Time // kept across recoveries: a flapping limit logs once per interval
	var suppressed int
	logged := false // a failure was logged and its recovery not yet
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
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
		if delay > 0 {
			if logged {
				l.srv.log.Info("accept recovered", zap.String("listener", l.rt.Load().cfg.Name))
				logged = false
			}
			delay = 0
		}
		l.accepted.Add(1)
		l.srv.handlers.Add(1)
		go l.srv.handle(l, c)
	}
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
