package l4

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/l4edge/l4edge/internal/clienthello"
	"github.com/l4edge/l4edge/l4/closereason"
)

// maxClientHello caps the ClientHello l4edge reads before routing.
const maxClientHello = 16 << 10

// hello is what the route stage read from the client: the ClientHello's
// bytes, which the TLS server or the backend reads next, and what they
// say. Both are empty when the listener does not inspect or the client did
// not speak TLS first.
type hello struct {
	raw  []byte
	info *clienthello.Info
}

// selectRoute is the route stage of the full path: on a listener with
// matches (or ACME routes) it reads the ClientHello within
// inspect_timeout, answers an ACME TLS-ALPN-01 challenge itself, and picks
// the first matching route (match.go); otherwise the catch-all route. It
// sets c.route and, when a ClientHello came, c.tls.
func (s *Server) selectRoute(c *conn, client *net.TCPConn) (h hello, e ending) {
	lr := c.lr
	r := lr.catchAll
	if lr.inspect {
		if h, r, e = s.inspect(lr, client); e.ends() {
			return h, e
		}
	}
	if info := h.info; info != nil {
		c.tls = &tlsInfo{mode: TLSNone, sni: info.ServerName}
		if len(info.ALPN) > 0 {
			c.tls.alpn = info.ALPN[0]
		}
		if tp := lr.rt.TLS; tp != nil && tp.IsChallenge(info.ServerName, info.ALPN) {
			c.tls.mode = TLSTerminate
			err := tp.ServeChallenge(&replayConn{Conn: client, buf: h.raw}, lr.cfg.HandshakeTimeout)
			return h, ending{closereason.ACMEChallenge, err}
		}
	}
	if r == nil {
		return h, ending{reason: closereason.NoRoute}
	}
	c.route = r
	return h, ending{}
}

// inspect reads the ClientHello within inspect_timeout and picks a route.
func (s *Server) inspect(lr *listenerRuntime, client *net.TCPConn) (h hello, r *route, e ending) {
	_ = client.SetReadDeadline(time.Now().Add(lr.cfg.InspectTimeout))
	raw, info, err := clienthello.Read(client, maxClientHello)
	_ = client.SetReadDeadline(time.Time{})
	h.raw = raw
	switch {
	case err == nil:
		h.info = info
		if r = lr.pick(info.ServerName, info.ALPN); r == nil {
			return h, nil, ending{reason: closereason.NoRoute}
		}
		return h, r, ending{}
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Nothing (or no full hello) came in time. A silent client may be a
		// server-first protocol: the catch-all gets it.
		if len(raw) == 0 && lr.catchAll != nil {
			return h, lr.catchAll, ending{}
		}
		return h, nil, ending{closereason.InspectTimeout, err}
	case errors.Is(err, clienthello.ErrNotTLS):
		if lr.catchAll != nil {
			return h, lr.catchAll, ending{}
		}
		return h, nil, ending{closereason.NoRoute, err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return h, nil, ending{closereason.ClientClosed, err}
	}
	return h, nil, ending{closereason.InvalidClientHello, err}
}
