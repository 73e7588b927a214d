package l4

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/internal/clienthello"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// maxClientHello caps the ClientHello l4edge reads before routing.
const maxClientHello = 16 << 10

// handle runs one connection from accept until the relay takes it over, or
// to its end. A connection handed to the relay ends in the relay's
// completion callback, not here.
func (s *Server) handle(l *listener, client *net.TCPConn) {
	lr := l.rt.Load()
	c := &conn{l: l, lr: lr, id: s.nextID.Add(1), start: time.Since(s.epoch), client: addrPort(client.RemoteAddr())}
	c.clientConn.Store(client)
	l.active.Add(1)
	if !s.track(c) {
		c.end(relayResult{reason: closereason.Shutdown})
		return
	}
	dst, reason, err := s.admit(lr, c, client)
	if reason != "" {
		c.end(relayResult{reason: reason, err: err})
		return
	}
	if res, handedOff := s.serveRoute(lr, c, dst); !handedOff {
		c.end(res)
	}
}

// admit applies the listener's connection limits and reads a PROXY header.
// It returns the connection's destination address; a reason other than ""
// refuses the connection.
func (s *Server) admit(lr *listenerRuntime, c *conn, client *net.TCPConn) (dst netip.AddrPort, reason closereason.Reason, err error) {
	if !c.withinMaxConnections() {
		return dst, closereason.Limit, nil
	}
	dst = addrPort(client.LocalAddr())
	if reason, err := s.readProxyHeader(lr, client, c, &dst); reason != "" {
		return dst, reason, err
	}
	if !c.takeIPSlot() {
		return dst, closereason.Limit, nil
	}
	return dst, "", nil
}

// withinMaxConnections applies the listener's max_connections (the
// connection is already counted in active).
func (c *conn) withinMaxConnections() bool {
	if m := c.lr.cfg.MaxConnections; m > 0 && c.l.active.Load() > int64(m) {
		c.l.refused.Add(1)
		return false
	}
	return true
}

// takeIPSlot applies max_connections_per_ip to the (final) client address;
// end gives the slot back.
func (c *conn) takeIPSlot() bool {
	m := c.lr.cfg.MaxConnectionsPerIP
	if m <= 0 {
		return true
	}
	if !c.l.perIP.acquire(c.ipKey(), m) {
		c.l.refused.Add(1)
		return false
	}
	c.perIP = true
	return true
}

// serveRoute inspects the ClientHello, routes, terminates or passes TLS
// through, dials the backend and relays. It reports whether the relay (the
// event loop, or the relay's own goroutines) took the connection over and
// will end it; if not, res says why the connection ends.
func (s *Server) serveRoute(lr *listenerRuntime, c *conn, dst netip.AddrPort) (res relayResult, handedOff bool) {
	client := c.clientConn.Load()
	var raw []byte
	var hello *clienthello.Info
	r := lr.catchAll
	if lr.inspect {
		var reason closereason.Reason
		var err error
		raw, hello, r, reason, err = s.inspect(lr, client)
		if reason != "" {
			return relayResult{reason: reason, err: err}, false
		}
	}
	if hello != nil {
		c.tls = &tlsInfo{mode: TLSNone, sni: hello.ServerName}
		if len(hello.ALPN) > 0 {
			c.tls.alpn = hello.ALPN[0]
		}
		if tp := lr.rt.TLS; tp != nil && tp.IsChallenge(hello.ServerName, hello.ALPN) {
			c.tls.mode = TLSTerminate
			err := tp.ServeChallenge(&replayConn{Conn: client, buf: raw}, lr.cfg.HandshakeTimeout)
			return relayResult{reason: closereason.ACMEChallenge, err: err}, false
		}
	}
	if r == nil {
		return relayResult{reason: closereason.NoRoute}, false
	}
	c.route = r
	front := tlsrelay.Leg{Conn: client, TCP: client}
	if r.tlsConfig != nil {
		hsStart := time.Now()
		tc, err := handshake(client, raw, r.tlsConfig, lr.cfg.HandshakeTimeout)
		if err == nil && s.opts.OnHandshake != nil {
			s.opts.OnHandshake(lr.cfg.Name, time.Since(hsStart))
		}
		if c.tls == nil {
			c.tls = &tlsInfo{}
		}
		c.tls.mode = TLSTerminate
		if err != nil {
			return relayResult{reason: closereason.HandshakeFailed, err: err}, false
		}
		st := tc.ConnectionState()
		c.tls.sni, c.tls.alpn = st.ServerName, st.NegotiatedProtocol
		front.Conn, raw = tc, nil
	} else if c.tls != nil {
		c.tls.mode = TLSPassthrough
	}

	backend, res, ok := s.dial(c, r)
	if !ok {
		return res, false
	}
	preamble := s.proxyHeader(r, c, hello, front, dst)
	if err := sendPreamble(c, backend, append(preamble, raw...)); err != nil {
		return relayResult{reason: closereason.BackendClosed, err: err}, false
	}
	c.preamble = int32(len(raw))

	idle := r.pool.Config.IdleTimeout
	if front.Conn == net.Conn(client) && s.loops != nil {
		if s.relayInLoop(c, backend, idle) {
			return relayResult{}, true
		}
	}
	back := tlsrelay.Leg{Conn: backend, TCP: backend}
	if s.loops != nil {
		p, err := s.relayer.Park(s.loops, front, back, idle, c.FlowEnded)
		if err == nil {
			c.parked.Store(p)
			if c.forced.Load() != nil { // a force close raced with the hand-off
				p.Close()
			}
			return relayResult{}, true
		}
		s.log.Debug("event loop refused a watch; relaying in goroutines", zap.Error(err))
	}
	s.relayer.Relay(front, back, idle, c.FlowEnded)
	return relayResult{}, true
}

// dial connects c to a backend of r's pool; each attempt is bounded by
// connect_timeout and s.ctx aborts it at shutdown. When ok is false, res
// says why the connection ends.
func (s *Server) dial(c *conn, r *route) (backend *net.TCPConn, res relayResult, ok bool) {
	backend, b, err := r.pool.Dial(s.ctx, c.client.Addr())
	if err != nil {
		return nil, dialFailure(err), false
	}
	c.backendConn.Store(backend)
	c.backendRef.Store(b)
	c.routed.Store(true)
	if c.forced.Load() != nil { // shutdown raced with the dial
		return nil, relayResult{}, false
	}
	return backend, relayResult{}, true
}

// sendPreamble writes what must reach the backend before the relay (the
// PROXY header, the ClientHello bytes inspection read) within
// connect_timeout. A failure counts against the backend.
func sendPreamble(c *conn, backend *net.TCPConn, preamble []byte) error {
	if len(preamble) == 0 {
		return nil
	}
	b := c.backendRef.Load()
	_ = backend.SetWriteDeadline(time.Now().Add(c.route.pool.Config.ConnectTimeout))
	if _, err := backend.Write(preamble); err != nil {
		err = fmt.Errorf("write to backend %s: %w", b.Address, err)
		b.ReportFailure(err)
		return err
	}
	_ = backend.SetWriteDeadline(time.Time{})
	return nil
}

// inspect reads the ClientHello within inspect_timeout and picks a route.
// A reason other than "" ends the connection.
func (s *Server) inspect(lr *listenerRuntime, client *net.TCPConn) (raw []byte, info *clienthello.Info, r *route, reason closereason.Reason, err error) {
	_ = client.SetReadDeadline(time.Now().Add(lr.cfg.InspectTimeout))
	raw, info, err = clienthello.Read(client, maxClientHello)
	_ = client.SetReadDeadline(time.Time{})
	switch {
	case err == nil:
		if r = lr.pick(info.ServerName, info.ALPN); r == nil {
			return raw, info, nil, closereason.NoRoute, nil
		}
		return raw, info, r, "", nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Nothing (or no full hello) came in time. A silent client may be a
		// server-first protocol: the catch-all gets it.
		if len(raw) == 0 && lr.catchAll != nil {
			return raw, nil, lr.catchAll, "", nil
		}
		return raw, nil, nil, closereason.InspectTimeout, err
	case errors.Is(err, clienthello.ErrNotTLS):
		if lr.catchAll != nil {
			return raw, nil, lr.catchAll, "", nil
		}
		return raw, nil, nil, closereason.NoRoute, err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return raw, nil, nil, closereason.ClientClosed, err
	}
	return raw, nil, nil, closereason.InvalidClientHello, err
}

// handshake terminates TLS within timeout; the TLS server first reads the
// ClientHello bytes that inspection consumed.
func handshake(client *net.TCPConn, raw []byte, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	var under net.Conn = client
	if len(raw) > 0 {
		under = &replayConn{Conn: client, buf: raw}
	}
	tc := tlsrelay.Server(under, cfg)
	if timeout > 0 {
		_ = client.SetDeadline(time.Now().Add(timeout))
	}
	err := tc.Handshake()
	_ = client.SetDeadline(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// replayConn returns buf before reading from the connection. It embeds the
// net.Conn interface, not *net.TCPConn, so it exposes no ReadFrom/WriteTo
// that would bypass Read; it is used only under crypto/tls, never spliced.
type replayConn struct {
	net.Conn
	buf []byte
}

// Read returns the replayed bytes first.
func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
