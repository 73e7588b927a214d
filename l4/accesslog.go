package l4

import (
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/l4/closereason"
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
	Close          closereason.Reason
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
		zap.String("close", string(r.Close)),
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
