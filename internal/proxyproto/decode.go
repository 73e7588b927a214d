package proxyproto

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Read reads exactly one v1 or v2 header from r and nothing after it. The
// first byte decides: anything but the start of a signature is ErrNoHeader
// (after reading that one byte). Read errors come back wrapped.
func Read(r io.Reader) (*Header, error) {
	var first [1]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return nil, fmt.Errorf("read PROXY header: %w", err)
	}
	switch first[0] {
	case v1Prefix[0]:
		return readV1(r)
	case v2Sig[0]:
		return readV2(r)
	}
	return nil, ErrNoHeader
}

// readV1 reads the rest of a text header byte by byte up to its CRLF.
func readV1(r io.Reader) (*Header, error) {
	line := make([]byte, 1, MaxV1Len)
	line[0] = v1Prefix[0]
	var b [1]byte
	for {
		if len(line) == MaxV1Len {
			return nil, fmt.Errorf("%w: v1 line longer than %d bytes", ErrMalformed, MaxV1Len)
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("read PROXY header: %w", err)
		}
		line = append(line, b[0])
		if len(line) <= len(v1Prefix) && line[len(line)-1] != v1Prefix[len(line)-1] {
			return nil, ErrNoHeader
		}
		if b[0] == '\n' {
			break
		}
	}
	return parseV1(string(line))
}

// parseV1 parses a complete v1 line including its CRLF.
func parseV1(line string) (*Header, error) {
	body, ok := strings.CutSuffix(line, "\r\n")
	if !ok {
		return nil, fmt.Errorf("%w: v1 line does not end with CRLF", ErrMalformed)
	}
	body = strings.TrimPrefix(body, v1Prefix)
	f := strings.Split(body, " ")
	h := &Header{Version: 1, Command: Local}
	switch f[0] {
	case "UNKNOWN":
		return h, nil
	case "TCP4", "TCP6":
	default:
		return nil, fmt.Errorf("%w: v1 protocol %q", ErrMalformed, f[0])
	}
	if len(f) != 5 {
		return nil, fmt.Errorf("%w: v1 wants 4 fields after %s, got %d", ErrMalformed, f[0], len(f)-1)
	}
	src, err1 := netip.ParseAddr(f[1])
	dst, err2 := netip.ParseAddr(f[2])
	sp, err3 := parsePort(f[3])
	dp, err4 := parsePort(f[4])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return nil, fmt.Errorf("%w: v1 addresses %q", ErrMalformed, body)
	}
	want4 := f[0] == "TCP4"
	if src.Is4() != want4 || dst.Is4() != want4 || src.Zone() != "" || dst.Zone() != "" {
		return nil, fmt.Errorf("%w: v1 addresses do not match %s", ErrMalformed, f[0])
	}
	h.Command = Proxy
	h.Source, h.Destination = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, nil
}

// parsePort accepts 0-65535 in plain decimal, without sign or leading zero.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, ErrMalformed
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrMalformed
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, ErrMalformed
	}
	return uint16(n), nil
}

// readV2 reads the rest of the 16-byte fixed part, checks the announced
// length against MaxV2Len, then reads exactly that many bytes.
func readV2(r io.Reader) (*Header, error) {
	var fixed [16]byte
	fixed[0] = v2Sig[0]
	if _, err := io.ReadFull(r, fixed[1:12]); err != nil {
		return nil, fmt.Errorf("read PROXY header: %w", err)
	}
	if string(fixed[:12]) != v2Sig {
		return nil, ErrNoHeader
	}
	if _, err := io.ReadFull(r, fixed[12:]); err != nil {
		return nil, fmt.Errorf("read PROXY header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(fixed[14:]))
	if n > MaxV2Len {
		return nil, fmt.Errorf("%w: v2 length %d over the %d-byte limit", ErrMalformed, n, MaxV2Len)
	}
	block := make([]byte, n)
	if _, err := io.ReadFull(r, block); err != nil {
		return nil, fmt.Errorf("read PROXY header: %w", err)
	}
	return parseV2(fixed[12], fixed[13], block)
}

// Address block sizes by family.
const (
	lenInet  = 12
	lenInet6 = 36
	lenUnix  = 216
)

// parseV2 parses the version/command and family bytes and the block.
func parseV2(verCmd, famProto byte, block []byte) (*Header, error) {
	if verCmd>>4 != 2 {
		return nil, fmt.Errorf("%w: v2 version %d", ErrMalformed, verCmd>>4)
	}
	h := &Header{Version: 2}
	switch verCmd & 0x0f {
	case 0:
		h.Command = Local
	case 1:
		h.Command = Proxy
	default:
		return nil, fmt.Errorf("%w: v2 command %d", ErrMalformed, verCmd&0x0f)
	}
	fam, proto := famProto>>4, famProto&0x0f
	if fam > 3 || proto > 2 {
		return nil, fmt.Errorf("%w: v2 family/protocol 0x%02x", ErrMalformed, famProto)
	}
	size := [4]int{0, lenInet, lenInet6, lenUnix}[fam]
	if len(block) < size {
		return nil, fmt.Errorf("%w: v2 block of %d bytes is shorter than its %d-byte addresses", ErrMalformed, len(block), size)
	}
	if h.Command == Local {
		return h, nil // receivers skip the whole block of a LOCAL header
	}
	switch fam {
	case 1:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[0:4])), binary.BigEndian.Uint16(block[8:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[4:8])), binary.BigEndian.Uint16(block[10:]))
	case 2:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(block[0:16])), binary.BigEndian.Uint16(block[32:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(block[16:32])), binary.BigEndian.Uint16(block[34:]))
	}
	return h, parseTLVs(h, block[size:])
}

// parseTLVs reads the TLVs after the address block.
func parseTLVs(h *Header, b []byte) error {
	for len(b) > 0 {
		if len(b) < 3 {
			return fmt.Errorf("%w: truncated TLV header", ErrMalformed)
		}
		typ, n := b[0], int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return fmt.Errorf("%w: TLV 0x%02x of %d bytes runs past the block", ErrMalformed, typ, n)
		}
		v := b[3 : 3+n]
		b = b[3+n:]
		switch typ {
		case TypeALPN:
			h.ALPN = append([]byte(nil), v...)
		case TypeAuthority:
			h.Authority = string(v)
		case TypeSSL:
			ssl, err := parseSSL(v)
			if err != nil {
				return err
			}
			h.SSL = ssl
		default:
			h.TLVs = append(h.TLVs, TLV{Type: typ, Value: append([]byte(nil), v...)})
		}
	}
	return nil
}

func parseSSL(v []byte) (*SSLInfo, error) {
	if len(v) < 5 {
		return nil, fmt.Errorf("%w: SSL TLV of %d bytes", ErrMalformed, len(v))
	}
	s := &SSLInfo{Client: v[0], Verify: binary.BigEndian.Uint32(v[1:5])}
	sub := &Header{}
	if err := parseTLVs(sub, v[5:]); err != nil {
		return nil, err
	}
	for _, t := range sub.TLVs {
		if t.Type == SubtypeSSLVer {
			s.Version = string(t.Value)
		}
	}
	return s, nil
}
