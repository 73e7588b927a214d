// Package closereason is the one set of reasons a connection ends with: the
// access log's `close` field and the result label of
// l4edge_connections_total. Every stage of package l4 and both relays (the
// event loop in relayloop, the terminated-TLS relay in tlsrelay) end a
// connection with one of these; nothing else names a close reason.
package closereason

// Reason says why a connection ended.
type Reason string

// The reasons, in the order a connection meets them.
const (
	// Limit: max_connections or max_connections_per_ip refused it.
	Limit Reason = "limit"
	// Shutdown: l4edge stopped (the grace period ran out, or the
	// connection was accepted while stopping).
	Shutdown Reason = "shutdown"
	// UntrustedProxy: a peer outside proxy_protocol_in.trusted began with
	// a PROXY header.
	UntrustedProxy Reason = "untrusted_proxy_header"
	// ProxyHeaderTimeout: a trusted peer sent no PROXY header within
	// proxy_protocol_in.timeout.
	ProxyHeaderTimeout Reason = "proxy_header_timeout"
	// InvalidProxyHeader: a trusted peer's PROXY header did not parse.
	InvalidProxyHeader Reason = "invalid_proxy_header"
	// InspectTimeout: no complete ClientHello within inspect_timeout.
	InspectTimeout Reason = "inspect_timeout"
	// InvalidClientHello: the ClientHello did not parse.
	InvalidClientHello Reason = "invalid_client_hello"
	// NoRoute: no route matched the ClientHello.
	NoRoute Reason = "no_route"
	// ACMEChallenge: a TLS-ALPN-01 challenge was answered on the traffic
	// port.
	ACMEChallenge Reason = "acme_challenge"
	// HandshakeFailed: the terminating TLS handshake failed or timed out.
	HandshakeFailed Reason = "handshake_failed"
	// NoBackend: the pool had no backend to try.
	NoBackend Reason = "no_backend"
	// DialFailed: every connect attempt failed.
	DialFailed Reason = "dial_failed"
	// ClientClosed: the client ended the relay first (FIN, reset, or a
	// write to it failed).
	ClientClosed Reason = "client_closed"
	// BackendClosed: the backend ended the relay first.
	BackendClosed Reason = "backend_closed"
	// BackendReset: the backend reset the connection after it took or
	// sent bytes; the application's business, never a health failure.
	BackendReset Reason = "backend_reset"
	// IdleTimeout: no byte arrived from either side for the pool's
	// idle_timeout.
	IdleTimeout Reason = "idle_timeout"
	// BackendDown: close_on_unhealthy closed it when its backend was
	// marked down.
	BackendDown Reason = "backend_down"
)
