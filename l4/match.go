package l4

import (
	"slices"

	"github.com/l4edge/l4edge/internal/hostname"
)

// matches reports whether a route accepts a ClientHello with this server name
// and ALPN list. A ClientHello without SNI matches only routes without
// match.sni; routes with match.alpn need one of their protocols offered.
func (r *route) matches(sni string, alpn []string) bool {
	if r.cfg.Match == nil {
		return true
	}
	if len(r.sni) > 0 && !hostname.MatchAny(r.sni, sni) { // no SNI matches no name
		return false
	}
	if len(r.alpn) > 0 {
		return slices.ContainsFunc(alpn, func(p string) bool { return slices.Contains(r.alpn, p) })
	}
	return true
}

// pick returns the first route matching a ClientHello, or nil.
func (lr *listenerRuntime) pick(sni string, alpn []string) *route {
	for _, r := range lr.routes {
		if r.matches(sni, alpn) {
			return r
		}
	}
	return nil
}
