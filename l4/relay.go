//go:build linux

package l4

import (
	"net"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// relay is the relay stage of the full path. Two plain sockets go to an
// event loop (splice, no goroutine), and so does a terminated TLS leg, its
// records opened and sealed in the loop (tlsrelay.StartInLoop); when no
// loop can take it, the TLS relay parks it in the event loops while idle,
// or runs it in goroutines of its own. The relay then owns the connection and
// ends it: relay always returns the zero ending.
func (s *Server) relay(c *conn, front tlsrelay.Leg, backend *net.TCPConn) ending {
	idle := c.route.pool.Config.IdleTimeout
	if s.loops != nil {
		var err error
		if client := c.clientConn.Load(); front.Conn == net.Conn(client) {
			err = s.loops.Start(&c.flow, client, backend, idle, c)
		} else {
			err = s.relayer.StartInLoop(s.loops, &c.flow, front, backend, idle, c)
		}
		if err == nil {
			c.handOff(nil)
			return ending{}
		}
		s.log.Debug("event loop refused a connection; relaying otherwise", zap.Error(err))
		p, err := s.relayer.Park(s.loops, front, tlsrelay.Leg{Conn: backend, TCP: backend}, idle, c.FlowEnded)
		if err == nil {
			c.handOff(p)
			return ending{}
		}
		s.log.Debug("event loop refused a watch; relaying in goroutines", zap.Error(err))
	}
	s.relayer.Relay(front, tlsrelay.Leg{Conn: backend, TCP: backend}, idle, c.FlowEnded)
	return ending{}
}

// relayFD is the relay stage of the raw path with a connected backend: the
// event loop takes the accepted descriptor as it is; if it cannot, the
// descriptor becomes a *net.TCPConn for the goroutine relay. It takes fd
// over.
func (s *Server) relayFD(c *conn, fd int, backend *net.TCPConn) ending {
	idle := c.route.pool.Config.IdleTimeout
	err := s.loops.StartFD(&c.flow, fd, backend, idle, c)
	if err == nil {
		c.handOff(nil)
		return ending{}
	}
	s.log.Debug("event loop refused a connection; relaying in its goroutines", zap.Error(err))
	client, err := fdConn(fd)
	if err != nil {
		return ending{closereason.ClientClosed, err}
	}
	c.clientConn.Store(client)
	if e := c.forcedEnding(); e.ends() {
		return e
	}
	s.relayer.Relay(tlsrelay.Leg{Conn: client, TCP: client}, tlsrelay.Leg{Conn: backend, TCP: backend}, idle, c.FlowEnded)
	return ending{}
}
