package l4

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// terminate is the terminate stage: a route with a tls block gets the TLS
// handshake within handshake_timeout, over the ClientHello bytes the route
// stage read (h.raw is then consumed); any other route passes the bytes
// through. It returns the client leg the relay reads and writes: the
// *tls.Conn, or the socket itself.
func (s *Server) terminate(c *conn, client *net.TCPConn, h *hello) (front tlsrelay.Leg, e ending) {
	front = tlsrelay.Leg{Conn: client, TCP: client}
	r, lr := c.route, c.lr
	if r.tlsConfig == nil {
		if c.tls != nil {
			c.tls.mode = TLSPassthrough
		}
		return front, ending{}
	}
	hsStart := time.Now()
	tc, err := handshake(client, h.raw, r.tlsConfig, lr.cfg.HandshakeTimeout)
	if err == nil && s.opts.OnHandshake != nil {
		s.opts.OnHandshake(lr.cfg.Name, time.Since(hsStart))
	}
	if c.tls == nil {
		c.tls = &tlsInfo{}
	}
	c.tls.mode = TLSTerminate
	if err != nil {
		return front, ending{closereason.HandshakeFailed, err}
	}
	st := tc.ConnectionState()
	c.tls.sni, c.tls.alpn = st.ServerName, st.NegotiatedProtocol
	front.Conn, h.raw = tc, nil
	return front, ending{}
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

// Buffered is how many replayed bytes are still to be read: the event
// loop can take the connection over only when none are.
func (r *replayConn) Buffered() int { return len(r.buf) }

// Read returns the replayed bytes first.
func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}
