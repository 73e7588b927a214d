// Package config turns an l4edge YAML file into a typed, validated Config.
//
// Decoding is strict (unknown keys are errors), every error names the key path
// and the line of the key at fault, and Load reports all errors of a file at
// once. Defaults are applied in one place (defaults.go) before validation, so
// every other package reads fully populated values.
package config

import "time"

// Config is a whole l4edge configuration file after defaults.
type Config struct {
	// Log configures the process logger and the access log.
	Log Log `yaml:"log"`
	// Admin configures the admin HTTP listener.
	Admin Admin `yaml:"admin"`
	// ShutdownGrace is how long open connections may run after SIGTERM.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// TLS holds the process-wide certificate settings (ACME, storage).
	TLS TLS `yaml:"tls"`
	// Listeners are the TCP listeners, in file order.
	Listeners []Listener `yaml:"listeners"`
	// Pools are the backend pools by name.
	Pools map[string]*Pool `yaml:"pools"`

	// Warnings lists keys that were accepted but do not act yet, or settings
	// that are legal but probably not what the operator meant. Validate keeps
	// them apart from errors: they never fail a load.
	Warnings []string `yaml:"-"`

	lines map[string]int // key path -> line in the file
}

// Log configures logging.
type Log struct {
	// Level is one of debug, info, warn, error.
	Level string `yaml:"level"`
	// Format is json or console.
	Format string `yaml:"format"`
	// Access enables one log entry per finished connection.
	Access *bool `yaml:"access"`
}

// AccessEnabled reports whether the access log is on (the default).
func (l Log) AccessEnabled() bool { return l.Access == nil || *l.Access }

// Admin configures the admin HTTP endpoints.
type Admin struct {
	// Listen is the admin address; empty disables the admin listener.
	Listen string `yaml:"listen"`
	// AllowRemote permits a non-loopback Listen address.
	AllowRemote bool `yaml:"allow_remote"`
}

// TLS holds process-wide TLS settings.
type TLS struct {
	// ACME configures automatic certificates; nil when not set.
	ACME *ACME `yaml:"acme"`
	// Storage is where certificates, keys and ACME locks live.
	Storage Storage `yaml:"storage"`
}

// ACME configures certificate issuance through an RFC 8555 CA.
type ACME struct {
	// Email is the ACME account contact.
	Email string `yaml:"email"`
	// CA is the directory URL.
	CA string `yaml:"ca"`
	// CARoots are PEM files trusted for the CA's own HTTPS endpoint.
	CARoots []string `yaml:"ca_roots"`
	// Challenges lists the enabled challenge types: tls-alpn-01, http-01.
	Challenges []string `yaml:"challenges"`
	// HTTPListen is the HTTP-01 solver and https redirect address; empty disables it.
	HTTPListen string `yaml:"http_listen"`
	// OnDemand enables issuance at the first handshake for allowed names; nil when not set.
	OnDemand *OnDemand `yaml:"on_demand"`
}

// OnDemand restricts on-demand issuance.
type OnDemand struct {
	// Allow lists name patterns (exact or one-label wildcard) that may get a certificate.
	Allow []string `yaml:"allow"`
	// Ask is an optional URL asked with ?domain=NAME; 200 means allowed.
	Ask string `yaml:"ask"`
}

// Storage selects where certificates live. At most one of File and Redis is set;
// after defaults, File is set when Redis is nil.
type Storage struct {
	// File is a directory for certificate storage.
	File string `yaml:"file"`
	// Redis selects shared storage in a Redis server; nil when not set.
	Redis *RedisStorage `yaml:"redis"`
}

// Listener is one TCP listener and its routes.
type Listener struct {
	// Name identifies the listener in logs and metrics; unique.
	Name string `yaml:"name"`
	// Listen is the host:port to bind; unique.
	Listen string `yaml:"listen"`
	// Multipath accepts MPTCP clients as MPTCP; by default the listener is
	// plain TCP (MPTCP clients fall back to TCP). Taken when the listener is
	// bound: a reload that keeps the address keeps the socket.
	Multipath bool `yaml:"multipath"`
	// ProxyProtocolIn accepts PROXY headers from trusted peers; nil when not set.
	ProxyProtocolIn *ProxyProtocolIn `yaml:"proxy_protocol_in"`
	// InspectTimeout bounds the wait for a ClientHello.
	InspectTimeout time.Duration `yaml:"inspect_timeout"`
	// HandshakeTimeout bounds a terminating TLS handshake.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxConnections caps concurrent connections; 0 is unlimited.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps concurrent connections per client address; 0 is unlimited.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// IPv6PrefixLength groups IPv6 clients for MaxConnectionsPerIP (default 64).
	IPv6PrefixLength int `yaml:"ipv6_prefix_length"`
	// Routes are tried in order; the first match wins.
	Routes []Route `yaml:"routes"`
}

// ProxyProtocolIn configures acceptance of incoming PROXY headers.
type ProxyProtocolIn struct {
	// Trusted lists CIDRs (or single addresses) whose PROXY headers are honoured.
	Trusted []string `yaml:"trusted"`
	// Timeout bounds the wait for the header.
	Timeout time.Duration `yaml:"timeout"`
}

// Route sends matching connections to a pool, optionally terminating TLS.
type Route struct {
	// Name identifies the route in logs and metrics; defaults to "route<N>".
	Name string `yaml:"name"`
	// Match selects connections; nil catches everything.
	Match *Match `yaml:"match"`
	// TLS selects passthrough or termination; nil means passthrough.
	TLS *RouteTLS `yaml:"tls"`
	// Pool names the backend pool.
	Pool string `yaml:"pool"`
}

// Match selects connections by ClientHello contents.
type Match struct {
	// SNI lists server names (exact, or "*.example.com" for one label).
	SNI []string `yaml:"sni"`
	// ALPN lists protocols; any one offered by the client matches.
	ALPN []string `yaml:"alpn"`
}

// TLS modes of a route.
const (
	ModePassthrough = "passthrough"
	ModeTerminate   = "terminate"
)

// Certificate sources of a terminating route.
const (
	CertACME       = "acme"
	CertSelfSigned = "self_signed"
	CertFiles      = "files"
)

// RouteTLS configures what a route does with TLS.
type RouteTLS struct {
	// Mode is terminate or passthrough.
	Mode string `yaml:"mode"`
	// Cert is acme, self_signed or files (terminate only).
	Cert string `yaml:"cert"`
	// CertFile and KeyFile are PEM paths for cert: files.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ALPN is what the terminated side offers the client (default [http/1.1]).
	ALPN []string `yaml:"alpn"`
	// MinVersion is "1.2" or "1.3" (default "1.2").
	MinVersion string `yaml:"min_version"`
}

// Terminates reports whether the route terminates TLS.
func (r Route) Terminates() bool { return r.TLS != nil && r.TLS.Mode == ModeTerminate }

// Balancing policies.
const (
	PolicyRoundRobin         = "round_robin"
	PolicyWeightedRoundRobin = "weighted_round_robin"
	PolicyLeastConn          = "least_conn"
	PolicyRandomTwo          = "random_two"
	PolicyIPHash             = "ip_hash"
)

// Pool is a named set of backends and how to use them.
type Pool struct {
	// Name is the pool's key in the pools map (filled by the loader).
	Name string `yaml:"-"`
	// Policy picks a backend for each connection.
	Policy string `yaml:"policy"`
	// Backends are the pool members.
	Backends []Backend `yaml:"backends"`
	// ProxyProtocol is "", "v1" or "v2": the header sent on each backend connection.
	ProxyProtocol string `yaml:"proxy_protocol"`
	// ConnectTimeout bounds one dial.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ConnectAttempts is how many backends to try before giving up.
	ConnectAttempts int `yaml:"connect_attempts"`
	// IdleTimeout closes a connection with no bytes either way for this long; 0 is none.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PassiveFall is how many passive failures in a row (refused or timed-out
	// connects, a reset or close before the backend took a byte) take a
	// backend out (default 3).
	PassiveFall int `yaml:"passive_fall"`
	// PassiveCooldown is how long a passively failed backend without active
	// checks stays out before it is retried (default 10s).
	PassiveCooldown time.Duration `yaml:"passive_cooldown"`
	// CloseOnUnhealthy closes open connections to a backend that turns unhealthy.
	CloseOnUnhealthy bool `yaml:"close_on_unhealthy"`
	// Health configures active checks; nil when not set.
	Health *Health `yaml:"health"`
}

// Backend is one pool member.
type Backend struct {
	// Address is host:port.
	Address string `yaml:"address"`
	// Weight is used by weighted policies (default 1).
	Weight int `yaml:"weight"`
}

// Active health check kinds.
const (
	CheckTCP       = "tcp"
	CheckTLS       = "tls"
	CheckHTTP      = "http"
	CheckWebSocket = "websocket"
)

// Health configures active health checks of a pool.
type Health struct {
	// Check is tcp, tls, http or websocket.
	Check string `yaml:"check"`
	// Path is the HTTP or WebSocket request path (default "/").
	Path string `yaml:"path"`
	// Host is the Host header (default: the backend address).
	Host string `yaml:"host"`
	// SNI is the server name for tls checks (default: Host if set).
	SNI string `yaml:"sni"`
	// CAFile, when set, verifies the backend's certificate for tls checks.
	CAFile string `yaml:"ca_file"`
	// ExpectStatus lists accepted HTTP status codes or ranges ("200-399", "204").
	ExpectStatus []string `yaml:"expect_status"`
	// ExpectBody is an optional substring the HTTP body must contain.
	ExpectBody string `yaml:"expect_body"`
	// Interval is the time between checks of one backend.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one check.
	Timeout time.Duration `yaml:"timeout"`
	// Rise is the consecutive passes that make a backend healthy.
	Rise int `yaml:"rise"`
	// Fall is the consecutive failures that make a backend unhealthy.
	Fall int `yaml:"fall"`
}
