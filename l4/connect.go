package l4

import (
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// connectInLoop is the dial of serveRaw without a goroutine waiting on it:
// it begins a nonblocking connect to the backend the pool picks and hands
// both sockets to an event loop, which completes the connect, tries the
// next backend on a failure (conn.ConnectFailed) and sends the PROXY header
// (conn.Connected). Connection setup then costs no netpoller registration,
// no descriptor duplicated and closed, and no goroutine parked and woken.
// The pool's backends must be IP literals (Pool.CanStartConnect).
func (s *Server) connectInLoop(c *conn, r *route, fd int) (res relayResult, handedOff bool) {
	b := r.pool.Next(c.client.Addr(), nil)
	if b == nil {
		return relayResult{reason: closereason.NoBackend, err: balancer.ErrNoBackend}, false
	}
	c.backendRef.Store(b) // not final until Connected sets routed
	bfd, err := balancer.StartConnect(b)
	if err != nil {
		if bfd, err = c.ConnectFailed(err); err != nil {
			return dialFailure(err), false
		}
	}
	if err := s.loops.StartConnecting(&c.flow, fd, bfd, r.pool.Config.ConnectTimeout, c); err != nil {
		unix.Close(bfd)
		return relayResult{reason: closereason.Shutdown, err: err}, false
	}
	c.inLoop.Store(true)
	if p := c.forced.Load(); p != nil { // a force close raced with the hand-off
		c.flow.Close(*p)
	}
	return relayResult{}, true
}

// Connected is told by the event loop that the backend accepted the
// connection: it sends the PROXY header, if the pool wants one, and
// returns the pool's idle timeout for the relay.
func (c *conn) Connected(clientFD, backendFD int) (time.Duration, error) {
	r := c.route
	r.pool.Connected()
	c.routed.Store(true)
	if c.redialed {
		c.l.srv.forgetTried(c)
	}
	if r.pool.Config.ProxyProtocol == "" {
		return r.pool.Config.IdleTimeout, nil
	}
	hdr := c.l.srv.proxyHeader(r, c, nil, tlsrelay.Leg{}, localAddrPort(clientFD))
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

// ConnectFailed records the failure of the current attempt (a passive
// failure of its backend) and begins a nonblocking connect to the next
// backend the pool picks, up to connect_attempts, as Pool.Dial does in one
// call. It returns the new socket, or the error that ends the connection.
// The event loop calls it when a connect failed or timed out; connectInLoop
// calls it for a connect that failed at once. It runs in one of the two at
// a time.
func (c *conn) ConnectFailed(cause error) (int, error) {
	s := c.l.srv
	pool := c.route.pool
	tried := s.triedBackends(c)
	if len(tried) == 0 {
		tried = append(tried, c.backendRef.Load())
	}
	c.redialed = true
	last, retry := pool.Failed(tried[len(tried)-1], len(tried), cause)
	c.backendRef.Store(nil)
	for retry && s.ctx.Err() == nil {
		b := pool.Next(c.client.Addr(), tried)
		if b == nil {
			break
		}
		tried = append(tried, b)
		c.backendRef.Store(b)
		fd, err := balancer.StartConnect(b)
		if err == nil {
			s.setTried(c, tried)
			return fd, nil
		}
		last, retry = pool.Failed(b, len(tried), err)
		c.backendRef.Store(nil)
	}
	s.setTried(c, tried)
	return -1, last
}

// triedBackends returns the backends a connection has tried so far, as
// ConnectFailed recorded them (none before its first failure).
func (s *Server) triedBackends(c *conn) []*balancer.Backend {
	s.triedMu.Lock()
	defer s.triedMu.Unlock()
	return s.tried[c]
}

func (s *Server) setTried(c *conn, tried []*balancer.Backend) {
	s.triedMu.Lock()
	s.tried[c] = tried
	s.triedMu.Unlock()
}

// forgetTried drops what ConnectFailed recorded once the connect is over.
func (s *Server) forgetTried(c *conn) {
	s.triedMu.Lock()
	delete(s.tried, c)
	s.triedMu.Unlock()
	c.redialed = false
}

// dialFailure is how a connection whose dial failed ends.
func dialFailure(err error) relayResult {
	if errors.Is(err, balancer.ErrNoBackend) {
		return relayResult{reason: closereason.NoBackend, err: err}
	}
	return relayResult{reason: closereason.DialFailed, err: err}
}
