package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/l4edge/l4edge/internal/hostname"
)

// checker collects validation errors with their lines.
type checker struct {
	c    *Config
	errs []error
}

// lineOf returns the line of path, or of its nearest enclosing key.
func (k *checker) lineOf(path string) int {
	for p := path; p != ""; {
		if l, ok := k.c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (k *checker) fail(path, format string, args ...any) {
	k.errs = append(k.errs, &FieldError{Path: path, Line: k.lineOf(path), Msg: fmt.Sprintf(format, args...)})
}

func (k *checker) warn(path, format string, args ...any) {
	k.c.Warnings = append(k.c.Warnings, (&FieldError{Path: path, Line: k.lineOf(path), Msg: fmt.Sprintf(format, args...)}).Error())
}

func (k *checker) oneOf(path, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		k.fail(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// hostPort checks "host:port"; portMin is 0 for listeners (any free port)
// and 1 for addresses l4edge dials.
func (k *checker) hostPort(path, v string, portMin int) {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		k.fail(path, "%q is not host:port", v)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < portMin || n > 65535 {
		k.fail(path, "%q has an invalid port (want %d-65535)", v, portMin)
		return
	}
	if host != "" && strings.ContainsAny(host, " /\\") {
		k.fail(path, "%q has an invalid host", v)
	}
}

func (k *checker) positive(path string, v int) {
	if v < 1 {
		k.fail(path, "must be at least 1, got %d", v)
	}
}

func (k *checker) nonNegative(path string, v int) {
	if v < 0 {
		k.fail(path, "must not be negative, got %d", v)
	}
}

// IsLoopback reports whether a host:port listens on loopback only
// (127.0.0.0/8, ::1 or localhost): the admin API's default reach.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// validate runs every cross-check of a decoded, defaulted Config.
func validate(c *Config) []error {
	k := &checker{c: c}
	k.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	k.oneOf("log.format", c.Log.Format, "json", "console")
	if c.Admin.Listen != "" {
		k.hostPort("admin.listen", c.Admin.Listen, 0)
		if !IsLoopback(c.Admin.Listen) && !c.Admin.AllowRemote {
			k.fail("admin.listen", "%q is not a loopback address; set admin.allow_remote: true to expose the admin API", c.Admin.Listen)
		}
	}
	k.tls()
	if len(c.Listeners) == 0 {
		k.fail("listeners", "at least one listener is required")
	}
	names, addrs := map[string]string{}, map[string]string{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if prev, dup := names[l.Name]; dup {
			k.fail(p+".name", "duplicate listener name %q (also %s)", l.Name, prev)
		}
		names[l.Name] = p
		if l.Listen == "" {
			k.fail(p+".listen", "an address is required, e.g. \":443\"")
		} else {
			k.hostPort(p+".listen", l.Listen, 0)
			if prev, dup := addrs[l.Listen]; dup && !strings.HasSuffix(l.Listen, ":0") {
				k.fail(p+".listen", "address %q is already used by %s", l.Listen, prev)
			}
			addrs[l.Listen] = p
		}
		k.listener(p, l)
	}
	for name, pool := range c.Pools {
		k.pool("pools."+name, pool)
	}
	return k.errs
}

func (k *checker) tls() {
	c := k.c
	if c.TLS.Storage.File != "" && c.TLS.Storage.Redis != nil {
		k.fail("tls.storage", "set file or redis, not both")
	}
	if r := c.TLS.Storage.Redis; r != nil {
		k.redis(r)
	}
	a := c.TLS.ACME
	if a == nil {
		return
	}
	if u, err := url.Parse(a.CA); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		k.fail("tls.acme.ca", "%q is not an http(s) URL of an ACME directory", a.CA)
	}
	for i, ch := range a.Challenges {
		k.oneOf(fmt.Sprintf("tls.acme.challenges[%d]", i), ch, "tls-alpn-01", "http-01")
	}
	if a.HTTPListen != "" {
		k.hostPort("tls.acme.http_listen", a.HTTPListen, 0)
	}
	if od := a.OnDemand; od != nil {
		for i, p := range od.Allow {
			if _, err := hostname.Pattern(p); err != nil {
				k.fail(fmt.Sprintf("tls.acme.on_demand.allow[%d]", i), "%v", err)
			}
		}
		if od.Ask != "" {
			if u, err := url.Parse(od.Ask); err != nil || u.Host == "" {
				k.fail("tls.acme.on_demand.ask", "%q is not a URL", od.Ask)
			}
		}
	}
}

func (k *checker) listener(p string, l Listener) {
	k.nonNegative(p+".max_connections", l.MaxConnections)
	k.nonNegative(p+".max_connections_per_ip", l.MaxConnectionsPerIP)
	if l.IPv6PrefixLength < 1 || l.IPv6PrefixLength > 128 {
		k.fail(p+".ipv6_prefix_length", "must be 1-128, got %d", l.IPv6PrefixLength)
	}
	// 0 cannot mean "no limit" for the waits on a client's first bytes:
	// an edge that waits forever is a slowloris target.
	if l.InspectTimeout <= 0 {
		k.fail(p+".inspect_timeout", "must be above 0: every inspected connection waits at most this long for its ClientHello")
	}
	if ppi := l.ProxyProtocolIn; ppi != nil {
		if ppi.Timeout <= 0 {
			k.fail(p+".proxy_protocol_in.timeout", "must be above 0: every trusted peer waits at most this long for its header")
		}
		if len(ppi.Trusted) == 0 {
			k.fail(p+".proxy_protocol_in.trusted", "list the peers allowed to send PROXY headers")
		}
		for i, t := range ppi.Trusted {
			if _, err := ParsePrefix(t); err != nil {
				k.fail(fmt.Sprintf("%s.proxy_protocol_in.trusted[%d]", p, i), "%v", err)
			}
		}
	}
	if len(l.Routes) == 0 {
		k.fail(p+".routes", "at least one route is required")
	}
	catchAll := ""
	for j, r := range l.Routes {
		rp := fmt.Sprintf("%s.routes[%d]", p, j)
		if catchAll != "" {
			k.warn(rp, "unreachable: %s has no match and catches everything before it", catchAll)
		}
		if r.Match == nil && catchAll == "" {
			catchAll = rp
		}
		k.route(rp, r)
	}
}

func (k *checker) route(rp string, r Route) {
	if r.Pool == "" {
		k.fail(rp+".pool", "a pool is required")
	} else if _, ok := k.c.Pools[r.Pool]; !ok {
		k.fail(rp+".pool", "unknown pool %q", r.Pool)
	}
	if m := r.Match; m != nil {
		if len(m.SNI) == 0 && len(m.ALPN) == 0 {
			k.fail(rp+".match", "empty match; remove it to catch everything")
		}
		for i, s := range m.SNI {
			if _, err := hostname.Pattern(s); err != nil {
				k.fail(fmt.Sprintf("%s.match.sni[%d]", rp, i), "%v", err)
			}
		}
	}
	t := r.TLS
	if t == nil {
		return
	}
	k.oneOf(rp+".tls.mode", t.Mode, ModeTerminate, ModePassthrough)
	if t.Mode == ModePassthrough {
		for key, set := range map[string]bool{"cert": t.Cert != "", "cert_file": t.CertFile != "", "key_file": t.KeyFile != "",
			"alpn": len(t.ALPN) > 0, "min_version": t.MinVersion != ""} {
			if set {
				k.fail(rp+".tls."+key, "not allowed with mode passthrough")
			}
		}
		return
	}
	k.oneOf(rp+".tls.cert", t.Cert, CertACME, CertSelfSigned, CertFiles)
	k.oneOf(rp+".tls.min_version", t.MinVersion, "1.2", "1.3")
	switch t.Cert {
	case CertFiles:
		if t.CertFile == "" || t.KeyFile == "" {
			k.fail(rp+".tls", "cert: files needs cert_file and key_file")
		}
	case CertACME:
		if k.c.TLS.ACME == nil {
			k.fail(rp+".tls.cert", "cert: acme needs tls.acme (at least an email)")
		} else if (r.Match == nil || len(r.Match.SNI) == 0) && k.c.TLS.ACME.OnDemand == nil {
			k.fail(rp+".tls.cert", "cert: acme needs match.sni names to manage (or tls.acme.on_demand)")
		}
	}
	if t.Cert != CertFiles && (t.CertFile != "" || t.KeyFile != "") {
		k.fail(rp+".tls.cert_file", "only used with cert: files")
	}
}

func (k *checker) pool(p string, pool *Pool) {
	k.oneOf(p+".policy", pool.Policy, PolicyRoundRobin, PolicyWeightedRoundRobin, PolicyLeastConn, PolicyRandomTwo, PolicyIPHash)
	k.oneOf(p+".proxy_protocol", pool.ProxyProtocol, "", "v1", "v2")
	if len(pool.Backends) == 0 {
		k.fail(p+".backends", "a pool needs at least one backend")
	}
	for i, b := range pool.Backends {
		bp := fmt.Sprintf("%s.backends[%d]", p, i)
		if b.Address == "" {
			k.fail(bp+".address", "an address is required")
		} else {
			k.hostPort(bp+".address", b.Address, 1)
		}
		if b.Weight < 1 {
			k.fail(bp+".weight", "weight must be positive, got %d", b.Weight)
		}
	}
	k.positive(p+".connect_attempts", pool.ConnectAttempts)
	k.positive(p+".passive_fall", pool.PassiveFall)
	if pool.ConnectTimeout == 0 {
		k.fail(p+".connect_timeout", "must be above 0: a dial must be bounded")
	}
	h := pool.Health
	if h == nil {
		return
	}
	k.oneOf(p+".health.check", h.Check, CheckTCP, CheckTLS, CheckHTTP, CheckWebSocket)
	k.positive(p+".health.rise", h.Rise)
	k.positive(p+".health.fall", h.Fall)
	for path, d := range map[string]time.Duration{p + ".health.interval": h.Interval, p + ".health.timeout": h.Timeout} {
		if d <= 0 {
			k.fail(path, "must be above 0")
		}
	}
	if !strings.HasPrefix(h.Path, "/") {
		k.fail(p+".health.path", "%q must start with /", h.Path)
	}
	for i, s := range h.ExpectStatus {
		if _, _, err := ParseStatusRange(s); err != nil {
			k.fail(fmt.Sprintf("%s.health.expect_status[%d]", p, i), "%v", err)
		}
	}
}

// ParseStatusRange parses "200" or "200-399" within 100-599.
func ParseStatusRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := lo, error(nil)
	if isRange {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("%q is not a status or range within 100-599", s)
	}
	return lo, hi, nil
}
