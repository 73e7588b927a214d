package l4

import (
	"crypto/tls"
	"net/netip"

	"github.com/l4edge/l4edge/internal/clienthello"
	"github.com/l4edge/l4edge/internal/proxyproto"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// The connect stage's PROXY header out (pools' proxy_protocol).

// proxyHeader builds the PROXY header c's pool sends first on each backend
// connection (proxy_protocol), or nil. dst is the address the client
// connected to. v2 carries ALPN and AUTHORITY when known (hello is the
// ClientHello of a passthrough route, front the client leg), and the SSL
// TLV on terminated routes.
func (s *Server) proxyHeader(c *conn, hello *clienthello.Info, front tlsrelay.Leg, dst netip.AddrPort) []byte {
	var version int
	switch c.route.pool.Config.ProxyProtocol {
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
