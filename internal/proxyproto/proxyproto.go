// Package proxyproto reads and writes PROXY protocol headers, versions 1
// (text) and 2 (binary, with TLVs), as HAProxy's proxy-protocol.txt defines
// them. Read is bounded (a v1 line is at most 107 bytes, a v2 block is
// length-checked before it is read) and never reads past the header.
package proxyproto

import (
	"errors"
	"net/netip"
)

// Command is a header's command.
type Command byte

// Commands. A v1 "UNKNOWN" header parses as Local.
const (
	// Local: the connection was made by the proxy itself (a health check);
	// use the socket's addresses.
	Local Command = 0
	// Proxy: the addresses are the original client's and destination.
	Proxy Command = 1
)

// v2 TLV types used here.
const (
	TypeALPN       = 0x01
	TypeAuthority  = 0x02
	TypeSSL        = 0x20
	SubtypeSSLVer  = 0x21
	ClientSSL      = 0x01 // SSL TLV client flag: the client connected over TLS
	ClientCertConn = 0x02 // SSL TLV client flag: a client certificate was sent
)

// Limits.
const (
	// MaxV1Len is the longest v1 header, CRLF included.
	MaxV1Len = 107
	// MaxV2Len caps the v2 address and TLV block l4edge accepts.
	MaxV2Len = 4096
)

// Errors Read wraps; test with errors.Is.
var (
	// ErrNoHeader means the bytes do not start with a PROXY signature.
	ErrNoHeader = errors.New("no PROXY protocol header")
	// ErrMalformed means a PROXY signature was followed by bytes that do not parse.
	ErrMalformed = errors.New("malformed PROXY protocol header")
)

// v1Prefix and v2Sig are the two signatures.
const (
	v1Prefix = "PROXY "
	v2Sig    = "\r\n\r\n\x00\r\nQUIT\n"
)

// Header is a parsed, or to-be-sent, PROXY header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Command is Local or Proxy.
	Command Command
	// Source and Destination are the original addresses; zero for Local
	// and for address families without IP addresses (AF_UNIX).
	Source, Destination netip.AddrPort
	// ALPN is the v2 ALPN TLV: the negotiated application protocol.
	ALPN []byte
	// Authority is the v2 AUTHORITY TLV: the server name the client asked for.
	Authority string
	// SSL is the v2 SSL TLV; nil when absent.
	SSL *SSLInfo
	// TLVs holds v2 TLVs of other types, as read.
	TLVs []TLV
}

// SSLInfo is the v2 SSL TLV.
type SSLInfo struct {
	// Client holds the ClientSSL/ClientCertConn... flags.
	Client byte
	// Verify is 0 when a client certificate verified (or none was required).
	Verify uint32
	// Version is the TLS version name, e.g. "TLSv1.3" (sub-TLV 0x21).
	Version string
}

// TLV is one type-length-value entry of a v2 header.
type TLV struct {
	Type  byte
	Value []byte
}

// HasSignaturePrefix compares the first bytes of a connection with the two
// PROXY signatures: match when b starts with one, more when b is a proper
// prefix of one (read more bytes to decide).
func HasSignaturePrefix(b []byte) (match, more bool) {
	for _, sig := range []string{v1Prefix, v2Sig} {
		n := min(len(b), len(sig))
		if string(b[:n]) != sig[:n] {
			continue
		}
		if n == len(sig) {
			return true, false
		}
		more = true
	}
	return false, more
}

// Append appends the header in its Version's encoding.
func (h *Header) Append(dst []byte) []byte {
	if h.Version == 1 {
		return h.AppendV1(dst)
	}
	return h.AppendV2(dst)
}

// addrs returns the addresses to encode: unmapped IPv4 when both are IPv4,
// otherwise both as IPv6; ok is false when they cannot be encoded.
func (h *Header) addrs() (src, dst netip.AddrPort, v4, ok bool) {
	if h.Command != Proxy || !h.Source.IsValid() || !h.Destination.IsValid() {
		return src, dst, false, false
	}
	s, d := h.Source.Addr().Unmap(), h.Destination.Addr().Unmap()
	if s.Is4() && d.Is4() {
		return netip.AddrPortFrom(s, h.Source.Port()), netip.AddrPortFrom(d, h.Destination.Port()), true, true
	}
	s16, d16 := netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	return netip.AddrPortFrom(s16, h.Source.Port()), netip.AddrPortFrom(d16, h.Destination.Port()), false, true
}
