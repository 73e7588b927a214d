package admin

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"go.uber.org/zap"
)

// sameOrigin guards a state-changing endpoint against cross-site requests.
// Any page a browser on this machine visits can make it POST to a loopback
// address; browsers then send that page's Origin. A request with an Origin
// is served only when the Origin is the admin listener's own: scheme http,
// the listener's port, the request's own Host, and a host that is an IP
// address of the listener or "localhost". A DNS name is refused even when
// it matches Host: a name an attacker controls can be rebound to 127.0.0.1,
// and the browser would then call its page same-origin. Requests without
// an Origin (curl, l4edge drain, scripts) are not browser cross-site
// requests and are served. (net/http's CrossOriginProtection compares
// Origin with Host only, so it lets the rebound name through.)
func (s *Server) sameOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || s.ownOrigin(origin, r.Host) {
			next(w, r)
			return
		}
		own := "http://" + s.ln.Addr().String()
		s.log.Warn("admin request refused: foreign Origin", zap.String("origin", origin),
			zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
		writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf(
			"refused: Origin %q is not this admin listener's own (%s); a state-changing request from a web page must come "+
				"from the status page at %s/ opened by IP address or localhost; clients that send no Origin (curl, l4edge drain) are not affected",
			origin, own, own)})
	}
}

// ownOrigin reports whether origin names this listener, as requested under host.
func (s *Server) ownOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" || u.User != nil || (u.Path != "" && u.Path != "/") || !strings.EqualFold(u.Host, host) {
		return false
	}
	bound, ok := s.ln.Addr().(*net.TCPAddr)
	if !ok || u.Port() != fmt.Sprint(bound.Port) {
		return false
	}
	name := u.Hostname()
	if strings.EqualFold(name, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(name)
	if err != nil {
		return false
	}
	listen := bound.AddrPort().Addr().Unmap()
	return listen.IsUnspecified() || ip.Unmap() == listen
}
