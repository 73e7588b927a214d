package l4

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/tlsrelay"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// handleRaw runs a connection that acceptRaw took on a listener that reads
// nothing from its clients before the relay (see rawAccept): limits, dial,
// the PROXY header out, then the event loop, which takes the accepted
// descriptor as it is.
func (s *Server) handleRaw(l *listener, fd int, sa syscall.Sockaddr) {
	lr := l.rt.Load()
	if !lr.rawAccept {
		// A reload changed the listener while it waited in accept.
		client, err := fdConn(fd)
		if err != nil {
			s.log.Error("accepted connection dropped", zap.String("listener", lr.cfg.Name), zap.Error(err))
			s.handlers.Done()
			return
		}
		s.handle(l, client)
		return
	}
	s.serveAccepted(l, lr, fd, sa)
}

// serveAccepted runs a connection accepted raw under listener runtime lr,
// which must have rawAccept set.
func (s *Server) serveAccepted(l *listener, lr *listenerRuntime, fd int, sa syscall.Sockaddr) {
	c := &conn{l: l, lr: lr, id: s.nextID.Add(1), start: time.Since(s.epoch), client: sockaddrAddrPort(sa)}
	l.active.Add(1)
	if res, handedOff := s.serveRaw(lr, c, fd); !handedOff {
		c.end(res)
	}
}

// serveRaw is serveRoute for handleRaw: the listener's catch-all route, no
// inspection, no TLS. It closes fd unless the relay took it.
func (s *Server) serveRaw(lr *listenerRuntime, c *conn, fd int) (res relayResult, handedOff bool) {
	owned := true
	defer func() {
		if owned {
			unix.Close(fd)
		}
	}()
	if !s.track(c) {
		return relayResult{reason: closereason.Shutdown}, false
	}
	if !c.withinMaxConnections() || !c.takeIPSlot() {
		return relayResult{reason: closereason.Limit}, false
	}
	r := lr.catchAll
	c.route = r
	if r.pool.CanStartConnect() {
		res, handedOff = s.connectInLoop(c, r, fd)
		owned = !handedOff
		return res, handedOff
	}
	backend, res, ok := s.dial(c, r)
	if !ok {
		return res, false
	}
	var dst netip.AddrPort
	if r.pool.Config.ProxyProtocol != "" {
		dst = localAddrPort(fd)
	}
	if err := sendPreamble(c, backend, s.proxyHeader(r, c, nil, tlsrelay.Leg{}, dst)); err != nil {
		return relayResult{reason: closereason.BackendClosed, err: err}, false
	}
	idle := r.pool.Config.IdleTimeout
	err := s.loops.StartFD(&c.flow, fd, backend, idle, c)
	if err == nil {
		owned = false
		c.inLoop.Store(true)
		c.backendConn.Store(nil)            // closed by StartFD; the flow owns a duplicate
		if p := c.forced.Load(); p != nil { // a force close raced with the hand-off
			c.flow.Close(*p)
		}
		return relayResult{}, true
	}
	s.log.Debug("event loop refused a connection; relaying in its goroutines", zap.Error(err))
	owned = false // fdConn closes it
	client, err := fdConn(fd)
	if err != nil {
		return relayResult{reason: closereason.ClientClosed, err: err}, false
	}
	c.clientConn.Store(client)
	if c.forced.Load() != nil {
		return relayResult{}, false
	}
	s.relayer.Relay(tlsrelay.Leg{Conn: client, TCP: client}, tlsrelay.Leg{Conn: backend, TCP: backend}, idle, c.FlowEnded)
	return relayResult{}, true
}

// fdConn turns an accepted descriptor into a *net.TCPConn (registered with
// Go's netpoller). fd is closed either way: the conn holds a duplicate.
func fdConn(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "client")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrap accepted socket: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("wrap accepted socket: not TCP")
	}
	return tc, nil
}

// sockaddrAddrPort converts accept4's peer address.
func sockaddrAddrPort(sa syscall.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// localAddrPort is the address a client connected to (for the PROXY
// header), or the zero AddrPort when the socket cannot say.
func localAddrPort(fd int) netip.AddrPort {
	sa, err := syscall.Getsockname(fd) // not unix's: see acceptRaw
	if err != nil {
		return netip.AddrPort{}
	}
	return sockaddrAddrPort(sa)
}
