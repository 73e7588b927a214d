//go:build linux

package l4

import (
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/relayloop"
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
	bfd, e := startConnect(c)
	if e.ends() {
		unix.Close(fd)
		return e
	}
	if err := s.loops.StartConnecting(&c.flow, fd, bfd, c.route.pool.Config.ConnectTimeout, c); err != nil {
		unix.Close(bfd)
		unix.Close(fd)
		return ending{closereason.Shutdown, err}
	}
	c.handOff(nil)
	return ending{}
}

// connectTLSInLoop is connectInLoop for a connection whose TLS the
// terminate stage ended, on the full path: the event loop completes the
// connect, sends hdr (the PROXY header, made beforehand because it names
// the TLS session, which the loop cannot see) and relays the session
// (tlsrelay.StartConnectingInLoop). The connect then costs what the raw
// path's does instead of a goroutine blocked in Dial. It reports false
// when the loops cannot take the connection: the blocking connect stage
// and the relay stage serve it then. A loop that refuses the flow (only
// while it shuts down, or when epoll_ctl fails) has cost the connect begun
// to the first backend, which is closed and its slot given back; the
// blocking connect starts its own walk, one turn of the pool's policy on.
func (s *Server) connectTLSInLoop(c *conn, front tlsrelay.Leg, hdr []byte) (e ending, took bool) {
	if s.loops == nil || !c.route.pool.CanStartConnect() || tlsrelay.CanStartInLoop(front) != nil {
		return ending{}, false
	}
	bfd, e := startConnect(c)
	if e.ends() {
		return e, true
	}
	var connector relayloop.Connector = c
	if len(hdr) > 0 {
		connector = &headerConnector{conn: c, hdr: hdr}
	}
	err := s.relayer.StartConnectingInLoop(s.loops, &c.flow, front, bfd, c.route.pool.Config.ConnectTimeout, connector)
	if err != nil {
		unix.Close(bfd)
		if b := c.backendRef.Swap(nil); b != nil {
			b.Release() // the blocking connect starts its own walk
		}
		c.attempts = nil
		s.log.Debug("event loop refused a connecting flow; connecting in its goroutine", zap.Error(err))
		return ending{}, false
	}
	c.handOff(nil)
	return ending{}, true
}

// startConnect begins the connect stage's first nonblocking connect to the
// backend the pool picks, moving on past backends whose connect fails at
// once (ConnectFailed). It returns the socket, whose connect is under way,
// or how the connection ends.
func startConnect(c *conn) (int, ending) {
	b := c.route.pool.FirstAttempt(c.client.Addr())
	if b == nil {
		return -1, dialFailure(balancer.ErrNoBackend)
	}
	c.backendRef.Store(b) // not final until Connected sets connRouted
	bfd, err := balancer.StartConnect(b)
	if err != nil {
		bfd, err = c.ConnectFailed(err)
	}
	if err != nil {
		return -1, dialFailure(err)
	}
	return bfd, ending{}
}

// ConnectFailed records that the current attempt failed or timed out (a
// passive failure of its backend; the walk through the pool begins here)
// and begins a nonblocking connect to the next backend the walk picks,
// moving on past connects that fail at once. It returns the new socket, or
// the error that ends the connection. The event loop calls it, and
// startConnect for a first connect that failed at once; one at a time.
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
// connection: it sends the PROXY header, if the pool wants one, made from
// the client socket's addresses, and returns the pool's idle timeout for
// the relay.
func (c *conn) Connected(clientFD, backendFD int) (time.Duration, error) {
	var hdr []byte
	if c.route.pool.Config.ProxyProtocol != "" {
		hdr = c.l.srv.proxyHeader(c, nil, tlsrelay.Leg{}, localAddrPort(clientFD))
	}
	return c.connected(backendFD, hdr)
}

// connected records that the connect stage is done and writes hdr, if
// any, to the backend; it returns the pool's idle timeout.
func (c *conn) connected(backendFD int, hdr []byte) (time.Duration, error) {
	r := c.route
	r.pool.Connected()
	c.attempts = nil
	c.set(connRouted)
	if len(hdr) == 0 {
		return r.pool.Config.IdleTimeout, nil
	}
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

// headerConnector is the Connector of a connection whose PROXY header was
// made before its connect began (connectTLSInLoop): Connected sends it
// and lets it go.
type headerConnector struct {
	*conn
	hdr []byte
}

// Connected sends the header made beforehand.
func (h *headerConnector) Connected(_, backendFD int) (time.Duration, error) {
	hdr := h.hdr
	h.hdr = nil // the flow keeps its Connector: keep no header with it
	return h.connected(backendFD, hdr)
}
