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
// nonblocking connect to the backend the connection's Attempts picks and
// hands both sockets to an event loop, which completes the connect, tries
// the next backend on a failure (ConnectFailed) and sends the PROXY header
// (Connected). Connection setup then costs no netpoller registration, no
// descriptor duplicated and closed, and no goroutine parked and woken. It
// takes fd over.
func (s *Server) connectInLoop(c *conn, fd int) ending {
	c.attempts = c.route.pool.NewAttempts(c.client.Addr())
	bfd, err := c.startAttempt()
	if err != nil {
		unix.Close(fd)
		return dialFailure(err)
	}
	if err := s.loops.StartConnecting(&c.flow, fd, bfd, c.route.pool.Config.ConnectTimeout, c); err != nil {
		unix.Close(bfd)
		unix.Close(fd)
		return ending{closereason.Shutdown, err}
	}
	c.handOff(nil)
	return ending{}
}

// startAttempt begins a nonblocking connect to the next backend the
// connection's Attempts picks, moving on past connects that fail at once.
// It returns the socket, or the error that ends the connection.
func (c *conn) startAttempt() (int, error) {
	a := c.attempts
	for b := a.Next(); b != nil; b = a.Next() {
		c.backendRef.Store(b) // not final until Connected sets connRouted
		fd, err := balancer.StartConnect(b)
		if err == nil {
			return fd, nil
		}
		c.backendRef.Store(nil)
		if !a.Failed(err) || c.l.srv.ctx.Err() != nil {
			break
		}
	}
	return -1, a.Err()
}

// ConnectFailed is told by the event loop that the current attempt failed
// or timed out: Attempts records it (a passive failure of its backend) and
// the next attempt begins, if one may. It returns the new socket, or the
// error that ends the connection.
func (c *conn) ConnectFailed(cause error) (int, error) {
	retry := c.attempts.Failed(cause)
	c.backendRef.Store(nil) // Failed released its slot
	if !retry || c.l.srv.ctx.Err() != nil {
		return -1, c.attempts.Err()
	}
	return c.startAttempt()
}

// Connected is told by the event loop that the backend accepted the
// connection: it sends the PROXY header, if the pool wants one, and
// returns the pool's idle timeout for the relay.
func (c *conn) Connected(clientFD, backendFD int) (time.Duration, error) {
	r := c.route
	c.attempts.Connected()
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
