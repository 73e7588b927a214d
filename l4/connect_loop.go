//go:build linux

package l4

import (
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// connectInLoop is the connect and relay stages of the raw path when the
// pool's backends are IP literals (Pool.CanStartConnect): it begins a
// nonblocking connect to the backend the pool picks and hands both sockets
// to an event loop, which completes the connect, tries the next backend on
// a failure (ConnectFailed) and sends the PROXY header (Connected).
// Connection setup then costs no netpoller registration, no descriptor
// duplicated and closed, no goroutine parked and woken, and, while the
// first attempt works, no allocation besides the conn: the walk through
// the pool's backends (balancer.Attempts) is made only once an attempt
// failed. It takes fd over.
func (s *Server) connectInLoop(c *conn, fd int) ending {
	pool := c.route.pool
	b := pool.FirstAttempt(c.client.Addr())
	if b == nil {
		unix.Close(fd)
		return dialFailure(balancer.ErrNoBackend)
	}
	c.backendRef.Store(b) // not final until Connected sets connRouted
	bfd, err := balancer.StartConnect(b)
	if err != nil {
		bfd, err = c.ConnectFailed(err)
	}
	if err != nil {
		unix.Close(fd)
		return dialFailure(err)
	}
	if err := s.loops.StartConnecting(&c.flow, fd, bfd, pool.Config.ConnectTimeout, c); err != nil {
		unix.Close(bfd)
		unix.Close(fd)
		return ending{closereason.Shutdown, err}
	}
	c.handOff(nil)
	return ending{}
}

// ConnectFailed records that the current attempt failed or timed out (a
// passive failure of its backend; the walk through the pool begins here)
// and begins a nonblocking connect to the next backend the walk picks,
// moving on past connects that fail at once. It returns the new socket, or
// the error that ends the connection. The event loop calls it, and
// connectInLoop for a first connect that failed at once; one at a time.
func (c *conn) ConnectFailed(cause error) (int, error) {
	if c.attempts == nil {
		c.attempts = c.route.pool.Resume(c.client.Addr(), c.backendRef.Load())
	}
	a := c.attempts
	for retry := a.Failed(cause); retry && c.l.srv.ctx.Err() == nil; retry = a.Failed(cause) {
		c.backendRef.Store(nil) // Failed released its slot
		b := a.Next()
		if b == nil {
			break
		}
		c.backendRef.Store(b)
		fd, err := balancer.StartConnect(b)
		if err == nil {
			return fd, nil
		}
		cause = err
	}
	c.backendRef.Store(nil)
	return -1, a.Err()
}

// Connected is told by the event loop that the backend accepted the
// connection: it sends the PROXY header, if the pool wants one, and
// returns the pool's idle timeout for the relay.
func (c *conn) Connected(clientFD, backendFD int) (time.Duration, error) {
	r := c.route
	r.pool.Connected()
	c.attempts = nil
	c.set(connRouted)
	if r.pool.Config.ProxyProtocol == "" {
		return r.pool.Config.IdleTimeout, nil
	}
	hdr := c.l.srv.proxyHeader(c, nil, tlsrelay.Leg{}, localAddrPort(clientFD))
	// A fresh socket's send buffer takes a PROXY header (at most a few
	// hundred bytes) whole.
	n, err := unix.Write(backendFD, hdr)
	if err == nil && n < len(hdr) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return r.pool.Config.IdleTimeout, fmt.Errorf("write PROXY header to backend %s: %w", c.backendRef.Load().Address, err)
	}
	return r.pool.Config.IdleTimeout, nil
}
