package l4

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/hostname"
)

// TLSProvider is what l4 needs from the certificate side (package tlsterm's
// Set): a tls.Config per terminating route, and TLS-ALPN-01 challenge
// handling on the traffic port.
type TLSProvider interface {
	// ServerConfig returns listener li, route ri's tls.Config, or nil when it
	// does not terminate.
	ServerConfig(li, ri int) *tls.Config
	// IsChallenge reports whether a ClientHello is an ACME TLS-ALPN-01
	// challenge for a name the provider manages.
	IsChallenge(sni string, alpn []string) bool
	// ServeChallenge answers a challenge on conn, which replays the peeked
	// ClientHello, and closes it.
	ServeChallenge(conn net.Conn, timeout time.Duration) error
}

// Runtime is one immutable configuration as the data path uses it: routes
// resolved to pools and tls.Configs. A reload builds a new Runtime and swaps
// it in; connections keep the Runtime they started with.
type Runtime struct {
	// Config is the validated configuration the runtime was built from.
	Config *config.Config
	// Pools are the backend pools by name.
	Pools map[string]*balancer.Pool
	// TLS provides certificates; nil when no route terminates.
	TLS TLSProvider

	listeners map[string]*listenerRuntime // by listen address
}

// listenerRuntime is one listener's share of a Runtime.
type listenerRuntime struct {
	rt       *Runtime
	index    int
	cfg      config.Listener
	routes   []*route
	catchAll *route // first route without match, or nil
	inspect  bool   // some route has a match: read the ClientHello first
	// rawAccept: nothing is read from a client before the relay (no
	// ClientHello, no PROXY header, no TLS termination), so connections
	// are accepted with accept4 straight into the event loop's hands.
	rawAccept bool
	trusted   []netip.Prefix
}

// route is a resolved config.Route.
type route struct {
	index     int
	name      string
	cfg       config.Route
	sni       []string // hostname.Normalize'd
	alpn      []string
	pool      *balancer.Pool
	tlsConfig *tls.Config // nil for passthrough
}

// NewRuntime resolves cfg against its pools and TLS provider. cfg must have
// passed config validation.
func NewRuntime(cfg *config.Config, pools map[string]*balancer.Pool, tlsp TLSProvider) (*Runtime, error) {
	rt := &Runtime{Config: cfg, Pools: pools, TLS: tlsp, listeners: map[string]*listenerRuntime{}}
	for li, lc := range cfg.Listeners {
		lr := &listenerRuntime{rt: rt, index: li, cfg: lc}
		if lc.ProxyProtocolIn != nil {
			trusted, err := lc.ProxyProtocolIn.TrustedPrefixes()
			if err != nil {
				return nil, fmt.Errorf("listeners[%d].proxy_protocol_in.%w", li, err)
			}
			lr.trusted = trusted
		}
		for ri, rc := range lc.Routes {
			r := &route{index: ri, name: rc.Name, cfg: rc, pool: pools[rc.Pool]}
			if r.pool == nil {
				return nil, fmt.Errorf("listeners[%d].routes[%d].pool: unknown pool %q", li, ri, rc.Pool)
			}
			if rc.Match != nil {
				lr.inspect = true
				r.sni = hostname.NormalizeAll(rc.Match.SNI)
				r.alpn = rc.Match.ALPN
			} else if lr.catchAll == nil {
				lr.catchAll = r
			}
			if rc.Terminates() {
				if rc.TLS.Cert == config.CertACME {
					lr.inspect = true // TLS-ALPN-01 challenges are told apart by their ClientHello
				}
				if tlsp != nil {
					r.tlsConfig = tlsp.ServerConfig(li, ri)
				}
				if r.tlsConfig == nil {
					return nil, fmt.Errorf("listeners[%d].routes[%d].tls: no certificate available for a terminating route", li, ri)
				}
			}
			lr.routes = append(lr.routes, r)
		}
		lr.rawAccept = !lr.inspect && lc.ProxyProtocolIn == nil && lr.catchAll != nil && lr.catchAll.tlsConfig == nil
		rt.listeners[listenKey(lc)] = lr
	}
	return rt, nil
}

// listenKey identifies a listener across reloads: its address, which
// validation keeps unique. Port 0 (any free port, used in tests) can repeat,
// so there the name joins the key.
func listenKey(lc config.Listener) string {
	if strings.HasSuffix(lc.Listen, ":0") {
		return lc.Name + "@" + lc.Listen
	}
	return lc.Listen
}

// isTrusted reports whether a peer may send a PROXY header.
func (lr *listenerRuntime) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range lr.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
