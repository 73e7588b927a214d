// Package clienthello reads the TLS ClientHello at the start of a
// connection, bounded and without reading past it, so a listener can route
// by SNI and ALPN and then replay the bytes to a backend or a TLS server.
package clienthello

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// Errors that Read and Parse wrap; test with errors.Is.
var (
	// ErrNotTLS means the first bytes are not a TLS handshake record.
	ErrNotTLS = errors.New("not a TLS ClientHello")
	// ErrTooLarge means the ClientHello is larger than the caller's cap.
	ErrTooLarge = errors.New("ClientHello too large")
	// ErrMalformed means the records or the ClientHello do not parse.
	ErrMalformed = errors.New("malformed ClientHello")
)

// TLS framing constants.
const (
	recordHeaderLen    = 5
	maxRecordLen       = 1 << 14 // TLSPlaintext.length limit of RFC 8446
	typeHandshake      = 22
	typeClientHello    = 1
	handshakeHeaderLen = 4
)

// Extension numbers parsed here.
const (
	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43
)

// Info is what routing needs from a ClientHello.
type Info struct {
	// ServerName is the SNI host name, lower-cased, without a trailing dot;
	// "" when absent.
	ServerName string
	// ALPN lists the offered application protocols in client order.
	ALPN []string
	// SupportedVersions lists the supported_versions extension, if sent.
	SupportedVersions []uint16
}

// Read reads from r until it holds one complete ClientHello, which may span
// several TLS records and TCP segments, and parses it. It returns every byte
// it consumed, so the caller can replay them, and never reads past the end
// of the record that completes the ClientHello. max caps the size of the
// handshake message. When the first byte is not a TLS handshake record Read
// returns ErrNotTLS having consumed only that byte. Read errors (deadlines,
// EOF) come back wrapped, with the bytes read so far.
func Read(r io.Reader, max int) (raw []byte, info *Info, err error) {
	var first [1]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return nil, nil, fmt.Errorf("read ClientHello: %w", err)
	}
	raw = append(make([]byte, 0, 1024), first[0])
	if first[0] != typeHandshake {
		return raw, nil, ErrNotTLS
	}
	var msg []byte                 // the handshake message, reassembled from record bodies
	need := -1                     // its full length once the 4-byte header is known
	missing := recordHeaderLen - 1 // the first record's type byte is read
	for {
		start := len(raw) - (recordHeaderLen - missing)
		if _, err := readMore(r, &raw, missing); err != nil {
			return raw, nil, err
		}
		hdr := raw[start : start+recordHeaderLen]
		first := start == 0
		missing = recordHeaderLen
		if hdr[0] != typeHandshake {
			return raw, nil, fmt.Errorf("%w: record type %d before the ClientHello ended", ErrMalformed, hdr[0])
		}
		if hdr[1] != 3 {
			if first {
				return raw, nil, ErrNotTLS
			}
			return raw, nil, fmt.Errorf("%w: record version %d.%d", ErrMalformed, hdr[1], hdr[2])
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > maxRecordLen {
			return raw, nil, fmt.Errorf("%w: record length %d", ErrMalformed, n)
		}
		body, err := readMore(r, &raw, n)
		if err != nil {
			return raw, nil, err
		}
		msg = append(msg, body...)
		if need < 0 && len(msg) >= handshakeHeaderLen {
			if msg[0] != typeClientHello {
				return raw, nil, fmt.Errorf("%w: handshake type %d, want ClientHello", ErrMalformed, msg[0])
			}
			need = handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if need-handshakeHeaderLen > max {
				return raw, nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, need-handshakeHeaderLen, max)
			}
		}
		if need >= 0 && len(msg) >= need {
			if len(msg) > need {
				return raw, nil, fmt.Errorf("%w: bytes after the ClientHello in its record", ErrMalformed)
			}
			info, err := Parse(msg[handshakeHeaderLen:])
			return raw, info, err
		}
	}
}

// readMore reads exactly n more bytes onto *raw and returns them.
func readMore(r io.Reader, raw *[]byte, n int) ([]byte, error) {
	start := len(*raw)
	*raw = append(*raw, make([]byte, n)...)
	got, err := io.ReadFull(r, (*raw)[start:])
	*raw = (*raw)[:start+got]
	if err != nil {
		return nil, fmt.Errorf("read ClientHello: %w", err)
	}
	return (*raw)[start:], nil
}

// Parse parses the body of a ClientHello handshake message (after its
// 4-byte header) and returns its SNI, ALPN and supported versions.
func Parse(hello []byte) (*Info, error) {
	s := cryptobyte.String(hello)
	var random, sessionID, suites, compression cryptobyte.String
	var version uint16
	if !s.ReadUint16(&version) || !s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) || !s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&compression) {
		return nil, fmt.Errorf("%w: truncated fixed fields", ErrMalformed)
	}
	info := &Info{}
	if s.Empty() {
		return info, nil // no extensions (an old client)
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return nil, fmt.Errorf("%w: bad extensions block", ErrMalformed)
	}
	seen := map[uint16]bool{}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, fmt.Errorf("%w: truncated extension", ErrMalformed)
		}
		if seen[typ] {
			return nil, fmt.Errorf("%w: duplicate extension %d", ErrMalformed, typ)
		}
		seen[typ] = true
		var err error
		switch typ {
		case extServerName:
			info.ServerName, err = parseSNI(data)
		case extALPN:
			info.ALPN, err = parseALPN(data)
		case extSupportedVersions:
			info.SupportedVersions, err = parseVersions(data)
		}
		if err != nil {
			return nil, err
		}
	}
	return info, nil
}

func parseSNI(data cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return "", fmt.Errorf("%w: bad server_name extension", ErrMalformed)
	}
	name := ""
	for !list.Empty() {
		var typ uint8
		var host cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&host) {
			return "", fmt.Errorf("%w: bad server_name entry", ErrMalformed)
		}
		if typ != 0 || name != "" {
			continue // only the first host_name counts
		}
		n, err := validHost(string(host))
		if err != nil {
			return "", err
		}
		name = n
	}
	return name, nil
}

// validHost checks an SNI host name and normalizes it.
func validHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("%w: server name of %d bytes", ErrMalformed, len(h))
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%w: server name %q has an empty or long label", ErrMalformed, h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("%w: server name %q has invalid character %q", ErrMalformed, h, c)
			}
		}
	}
	return h, nil
}

func parseALPN(data cryptobyte.String) ([]string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return nil, fmt.Errorf("%w: bad ALPN extension", ErrMalformed)
	}
	var protos []string
	for !list.Empty() {
		var p cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&p) || p.Empty() {
			return nil, fmt.Errorf("%w: bad ALPN protocol", ErrMalformed)
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

func parseVersions(data cryptobyte.String) ([]uint16, error) {
	var list cryptobyte.String
	if !data.ReadUint8LengthPrefixed(&list) || !data.Empty() || len(list)%2 != 0 {
		return nil, fmt.Errorf("%w: bad supported_versions extension", ErrMalformed)
	}
	var vs []uint16
	for !list.Empty() {
		var v uint16
		list.ReadUint16(&v)
		vs = append(vs, v)
	}
	return vs, nil
}
