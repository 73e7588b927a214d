//go:build linux

package l4

import (
	"net"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// The two drivers of doc.go's paths. Each runs the stages in order until
// one ends the connection (then the end stage runs here) or the relay
// stage takes it over (then the relay ends it).

// serveFull runs the full path of a connection Go's accept returned:
// admit, route, terminate, connect, relay.
func (s *Server) serveFull(l *listener, client *net.TCPConn) {
	c, e := s.newConn(l, l.rt.Load(), addrPort(client.RemoteAddr()))
	c.clientConn.Store(client)
	if !e.ends() {
		e = s.fullStages(c, client)
	}
	if e.ends() {
		c.endWith(e)
	}
}

// fullStages are the full path's stages after accept.
func (s *Server) fullStages(c *conn, client *net.TCPConn) ending {
	dst, e := s.admit(c, client)
	if e.ends() {
		return e
	}
	if !dst.IsValid() {
		dst = addrPort(client.LocalAddr())
	}
	h, e := s.selectRoute(c, client)
	if e.ends() {
		return e
	}
	front, e := s.terminate(c, client, &h)
	if e.ends() {
		return e
	}
	hdr := s.proxyHeader(c, h.info, front, dst)
	if e, took := s.connectTLSInLoop(c, front, hdr); took {
		return e
	}
	backend, e := s.connect(c)
	if e.ends() {
		return e
	}
	if e := sendPreamble(c, backend, hdr, h.raw); e.ends() {
		return e
	}
	return s.relay(c, front, backend)
}

// serveRaw runs the raw path of a descriptor accept4 returned under
// listener runtime lr (which has rawAccept): admit (limits), the catch-all
// route, connect, relay; nothing is read from the client. With IP-literal
// backends connect and relay both run in an event loop (connect_loop.go)
// and this returns at once. The flow is relayed in the loop that accepted
// the descriptor, if one did. A stage that ends the connection ends it
// with end: endWith, or endInLoop where this runs in an event loop.
func (s *Server) serveRaw(l *listener, lr *listenerRuntime, a accepted, end func(*conn, ending)) {
	c, e := s.newConn(l, lr, sockaddrAddrPort(a.peer))
	if e.ends() {
		unix.Close(a.fd)
		end(c, e)
		return
	}
	c.flow.SetHome(a.home)
	if e := s.rawStages(c, a.fd); e.ends() {
		end(c, e)
	}
}

// rawStages are the raw path's stages after accept. The relay stage
// (connectInLoop, relayFD) takes fd over; an earlier stage that ends the
// connection closes it.
func (s *Server) rawStages(c *conn, fd int) ending {
	if _, e := s.admit(c, nil); e.ends() {
		unix.Close(fd)
		return e
	}
	c.route = c.lr.catchAll
	if c.route.pool.CanStartConnect() {
		return s.connectInLoop(c, fd)
	}
	backend, e := s.connect(c)
	if e.ends() {
		unix.Close(fd)
		return e
	}
	var hdr []byte
	if c.route.pool.Config.ProxyProtocol != "" {
		hdr = s.proxyHeader(c, nil, tlsrelay.Leg{}, localAddrPort(fd))
	}
	if e := sendPreamble(c, backend, hdr, nil); e.ends() {
		unix.Close(fd)
		return e
	}
	return s.relayFD(c, fd, backend)
}

// serveReloaded runs the full path for a descriptor accept4 returned when
// a reload had meanwhile made its listener one that reads from clients.
func (s *Server) serveReloaded(l *listener, fd int) {
	client, err := fdConn(fd)
	if err != nil {
		s.log.Error("accepted connection dropped", zap.String("listener", l.rt.Load().cfg.Name), zap.Error(err))
		if balancer.LocalResourceError(err) {
			l.starved.Store(&err) // out of descriptors: the accept loop backs off
		}
		s.handlers.Done()
		return
	}
	s.serveFull(l, client)
}
