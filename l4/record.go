package l4

import (
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// Close reasons: why a connection ended, as the access log's `close` field
// and the result label of l4edge_connections_total.
const (
	CloseClientClosed  = "client_closed"
	CloseBackendClosed = "backend_closed"
	// CloseBackendReset: the backend reset the connection after it took or
	// sent bytes; the application's business, never a health failure.
	CloseBackendReset       = "backend_reset"
	CloseIdleTimeout        = "idle_timeout"
	CloseNoRoute            = "no_route"
	CloseNoBackend          = "no_backend"
	CloseDialFailed         = "dial_failed"
	CloseHandshakeFailed    = "handshake_failed"
	CloseInspectTimeout     = "inspect_timeout"
	CloseInvalidClientHello = "invalid_client_hello"
	CloseLimit              = "limit"
	CloseShutdown           = "shutdown"
	CloseBackendDown        = "backend_down"
	CloseACMEChallenge      = "acme_challenge"
	CloseUntrustedProxy     = "untrusted_proxy_header"
	CloseProxyHeaderTimeout = "proxy_header_timeout"
	CloseInvalidProxyHeader = "invalid_proxy_header"
)

// TLS handling of a connection, as the access log's `tls` field.
const (
	TLSNone        = "none"
	TLSPassthrough = "passthrough"
	TLSTerminate   = "terminate"
)

// Record describes one finished connection: the access log entry, and what
// metrics are counted from.
type Record struct {
	// ID identifies the connection within the process (as ConnInfo.ID).
	ID             uint64
	Listener       string
	Route          string
	Client         netip.AddrPort // after PROXY protocol
	SNI            string
	ALPN           string // negotiated when terminated, else the client's first offer
	TLS            string
	Pool           string
	Backend        string
	BytesToBackend int64
	BytesToClient  int64
	Start          time.Time
	Duration       time.Duration
	Close          string
	// Err is the error behind an abnormal close, if any (logged as "error").
	Err error
}

// fields returns the access log fields (the README's "Operating it" lists them).
func (r *Record) fields() []zap.Field {
	f := []zap.Field{
		zap.String("listener", r.Listener),
		zap.String("route", r.Route),
		zap.String("client", addrString(r.Client)),
		zap.String("sni", r.SNI),
		zap.String("alpn", r.ALPN),
		zap.String("tls", r.TLS),
		zap.String("pool", r.Pool),
		zap.String("backend", r.Backend),
		zap.Int64("bytes_to_backend", r.BytesToBackend),
		zap.Int64("bytes_to_client", r.BytesToClient),
		zap.Duration("duration", r.Duration),
		zap.String("close", r.Close),
	}
	if r.Err != nil {
		f = append(f, zap.Error(r.Err))
	}
	return f
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()).String()
}
