package l4

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/internal/clienthello"
	"github.com/l4edge/l4edge/internal/proxyproto"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// readProxyHeader handles proxy_protocol_in. From a trusted peer a header is
// required within the timeout and replaces the client (and destination)
// address; a LOCAL header keeps the socket addresses. From an untrusted peer
// a header is never honoured: a connection that starts with one is closed.
// A non-empty reason ends the connection.
func (s *Server) readProxyHeader(lr *listenerRuntime, client *net.TCPConn, c *conn, dst *netip.AddrPort) (closereason.Reason, error) {
	ppi := lr.cfg.ProxyProtocolIn
	if ppi == nil {
		return "", nil
	}
	if !lr.isTrusted(c.client.Addr()) {
		return s.rejectForgedHeader(lr, client, c.client)
	}
	_ = client.SetReadDeadline(time.Now().Add(ppi.Timeout))
	h, err := proxyproto.Read(client)
	_ = client.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return closereason.ProxyHeaderTimeout, fmt.Errorf("no PROXY header from trusted peer %s within %s", c.client, ppi.Timeout)
		}
		return closereason.InvalidProxyHeader, fmt.Errorf("PROXY header from trusted peer %s: %w", c.client, err)
	}
	if h.Command == proxyproto.Proxy && h.Source.IsValid() {
		c.client = netip.AddrPortFrom(h.Source.Addr().Unmap(), h.Source.Port())
		if h.Destination.IsValid() {
			*dst = h.Destination
		}
	}
	return "", nil
}

// forgedHeaderWindow bounds how long a listener that does not inspect
// (server-first protocols) waits for an untrusted peer's first bytes.
const forgedHeaderWindow = 250 * time.Millisecond

// rejectForgedHeader peeks, without consuming, at what an untrusted peer
// sent first. A listener that waits for a ClientHello anyway waits up to
// inspect_timeout for the first bytes; one that serves server-first
// protocols waits only briefly, then lets a silent client through. (A
// header sent later still reaches the backend only as payload, after
// l4edge's own header when the pool sends one.)
func (s *Server) rejectForgedHeader(lr *listenerRuntime, client *net.TCPConn, peer netip.AddrPort) (closereason.Reason, error) {
	wait := lr.cfg.InspectTimeout
	if !lr.inspect {
		wait = min(lr.cfg.ProxyProtocolIn.Timeout, forgedHeaderWindow)
	}
	_ = client.SetReadDeadline(time.Now().Add(wait))
	defer client.SetReadDeadline(time.Time{})
	rc, err := client.SyscallConn()
	if err != nil {
		return closereason.ClientClosed, err
	}
	var buf [16]byte
	forged := false
	// A deadline or an error here is not this step's verdict: what follows
	// (inspection, the relay) reports it.
	_ = rc.Read(func(fd uintptr) bool {
		n, _, e := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if e == unix.EAGAIN {
			return false // nothing yet: wait for bytes or the deadline
		}
		if e != nil || n == 0 {
			return true
		}
		match, more := proxyproto.HasSignaturePrefix(buf[:n])
		forged = match
		return !more
	})
	if forged {
		return closereason.UntrustedProxy, fmt.Errorf("PROXY header from untrusted peer %s", peer)
	}
	return "", nil
}

// proxyHeader builds the PROXY header a pool sends first on each backend
// connection, or nil. v2 carries ALPN and AUTHORITY when known, and the SSL
// TLV on terminated routes.
func (s *Server) proxyHeader(r *route, c *conn, hello *clienthello.Info, front tlsrelay.Leg, dst netip.AddrPort) []byte {
	var version int
	switch r.pool.Config.ProxyProtocol {
	case "v1":
		version = 1
	case "v2":
		version = 2
	default:
		return nil
	}
	h := &proxyproto.Header{Version: version, Command: proxyproto.Proxy, Source: c.client, Destination: dst}
	if !c.client.IsValid() || !dst.IsValid() {
		h.Command = proxyproto.Local
	}
	if version == 2 {
		if c.tls != nil {
			h.Authority = c.tls.sni
		}
		if tc, ok := front.Conn.(*tls.Conn); ok {
			st := tc.ConnectionState()
			if st.NegotiatedProtocol != "" {
				h.ALPN = []byte(st.NegotiatedProtocol)
			}
			h.SSL = &proxyproto.SSLInfo{Client: proxyproto.ClientSSL, Version: tlsVersionName(st.Version)}
		} else if hello != nil && len(hello.ALPN) == 1 {
			// Passthrough: the negotiated protocol is known only when the
			// client offered exactly one.
			h.ALPN = []byte(hello.ALPN[0])
		}
	}
	return h.Append(make([]byte, 0, 256))
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return tls.VersionName(v)
}
