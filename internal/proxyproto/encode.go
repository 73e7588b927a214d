package proxyproto

import (
	"encoding/binary"
	"strconv"
)

// AppendV1 appends a v1 text header: "PROXY TCP4 src dst sport dport\r\n",
// or "PROXY UNKNOWN\r\n" for Local or unencodable addresses.
func (h *Header) AppendV1(dst []byte) []byte {
	src, dstAddr, v4, ok := h.addrs()
	if !ok {
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	dst = append(dst, v1Prefix...)
	if v4 {
		dst = append(dst, "TCP4 "...)
	} else {
		dst = append(dst, "TCP6 "...)
	}
	dst = append(dst, src.Addr().String()...)
	dst = append(dst, ' ')
	dst = append(dst, dstAddr.Addr().String()...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(dstAddr.Port()), 10)
	return append(dst, "\r\n"...)
}

// AppendV2 appends a v2 binary header with the ALPN, AUTHORITY and SSL TLVs
// that are set. Local (or unencodable addresses) uses AF_UNSPEC with no
// address block.
func (h *Header) AppendV2(dst []byte) []byte {
	src, dstAddr, v4, ok := h.addrs()
	dst = append(dst, v2Sig...)
	lenAt := len(dst) + 2
	switch {
	case !ok:
		dst = append(dst, 0x20, 0x00, 0, 0) // version 2, LOCAL, AF_UNSPEC
	case v4:
		dst = append(dst, 0x21, 0x11, 0, 0) // PROXY, TCP over IPv4
		s, d := src.Addr().As4(), dstAddr.Addr().As4()
		dst = append(dst, s[:]...)
		dst = append(dst, d[:]...)
	default:
		dst = append(dst, 0x21, 0x21, 0, 0) // PROXY, TCP over IPv6
		s, d := src.Addr().As16(), dstAddr.Addr().As16()
		dst = append(dst, s[:]...)
		dst = append(dst, d[:]...)
	}
	if ok {
		dst = binary.BigEndian.AppendUint16(dst, src.Port())
		dst = binary.BigEndian.AppendUint16(dst, dstAddr.Port())
	}
	if len(h.ALPN) > 0 {
		dst = appendTLV(dst, TypeALPN, h.ALPN)
	}
	if h.Authority != "" {
		dst = appendTLV(dst, TypeAuthority, []byte(h.Authority))
	}
	if h.SSL != nil {
		var v []byte
		v = append(v, h.SSL.Client)
		v = binary.BigEndian.AppendUint32(v, h.SSL.Verify)
		if h.SSL.Version != "" {
			v = appendTLV(v, SubtypeSSLVer, []byte(h.SSL.Version))
		}
		dst = appendTLV(dst, TypeSSL, v)
	}
	for _, t := range h.TLVs {
		dst = appendTLV(dst, t.Type, t.Value)
	}
	binary.BigEndian.PutUint16(dst[lenAt:], uint16(len(dst)-lenAt-2))
	return dst
}

func appendTLV(dst []byte, typ byte, v []byte) []byte {
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	return append(dst, v...)
}
