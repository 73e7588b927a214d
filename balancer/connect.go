package balancer

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/config"
)

// Nonblocking connects, for callers that wait for completion in an event
// loop of their own (package l4's relay loops) instead of parking a
// goroutine in Dial. The caller drives the walk of attempts.go:
// FirstAttempt picks a backend, StartConnect begins the connect, and
// Connected, or Resume and Failed, record the outcome. Dial is the same
// walk in one blocking call.

// ConnectWindow is how soon after its accept a backend that ends a
// connection without taking a byte counts as having refused it: the
// pool's connect_timeout (the default when it is 0, unbounded).
func (p *Pool) ConnectWindow() time.Duration {
	if p.Config.ConnectTimeout > 0 {
		return p.Config.ConnectTimeout
	}
	return config.DefaultConnectTimeout
}

// MaxAttempts is how many backends one connection may try
// (connect_attempts).
func (p *Pool) MaxAttempts() int { return max(p.Config.ConnectAttempts, 1) }

// next picks the backend for a connection's next attempt, skipping tried,
// and counts a connection to it (Release undoes that). With no healthy
// backend the pool is in panic (panic.go) and tries the others. It returns
// nil when no backend can be tried.
func (p *Pool) next(client netip.Addr, tried []*Backend, now int64) *Backend {
	b := p.policy.pick(client, tried, now)
	if b == nil {
		b = p.panicPick(tried)
	}
	if b == nil {
		p.noteAllDown(tried)
		return nil
	}
	b.acquire()
	return b
}

// CanStartConnect reports whether StartConnect can reach every backend of
// the pool: all addresses are IP literals (a host name needs Dial's
// resolver).
func (p *Pool) CanStartConnect() bool { return p.literal }

// allLiteral reports whether every backend has a socket address.
func allLiteral(backends []*Backend) bool {
	for _, b := range backends {
		if b.sa == nil {
			return false
		}
	}
	return len(backends) > 0
}

// StartConnect opens a nonblocking socket to b with TCP_NODELAY and
// keepalive (backendKeepAlive, as Dial) and begins connecting. The
// connect completes later: the socket turns writable, and SO_ERROR then
// says whether it failed. The caller owns the returned descriptor.
func StartConnect(b *Backend) (int, error) {
	if b.sa == nil {
		return -1, fmt.Errorf("connect %s: not an IP address", b.Address)
	}
	// Connect writes into the address it is given: each call gets a copy.
	var sa unix.Sockaddr
	family := unix.AF_INET
	switch a := b.sa.(type) {
	case *unix.SockaddrInet4:
		sa = &unix.SockaddrInet4{Port: a.Port, Addr: a.Addr}
	case *unix.SockaddrInet6:
		sa, family = &unix.SockaddrInet6{Port: a.Port, Addr: a.Addr}, unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	keepAlive := int(backendKeepAlive / time.Second)
	for _, o := range [...]struct{ level, name, value int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAlive},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAlive},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.name, o.value); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt: %w", err)
		}
	}
	switch err := unix.Connect(fd, sa); err {
	case nil, unix.EINPROGRESS, unix.EINTR: // after EINTR the connect goes on
		return fd, nil
	default:
		unix.Close(fd)
		return -1, os.NewSyscallError("connect", err) // as net.Dialer says it
	}
}

// socketAddress converts an IP:port literal; nil for anything else.
func socketAddress(address string) unix.Sockaddr {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Addr().Zone() != "" {
		return nil
	}
	if a := ap.Addr().Unmap(); a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
