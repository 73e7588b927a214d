package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var (
	v4src = netip.MustParseAddrPort("192.0.2.10:51234")
	v4dst = netip.MustParseAddrPort("198.51.100.1:443")
	v6src = netip.MustParseAddrPort("[2001:db8::1]:40000")
	v6dst = netip.MustParseAddrPort("[2001:db8::2]:8443")
)

func TestKnownBytes(t *testing.T) {
	h := &Header{Version: 1, Command: Proxy, Source: v4src, Destination: v4dst}
	if got := string(h.AppendV1(nil)); got != "PROXY TCP4 192.0.2.10 198.51.100.1 51234 443\r\n" {
		t.Fatalf("v1 %q", got)
	}
	local := (&Header{Version: 2, Command: Local}).AppendV2(nil)
	want := []byte("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A\x20\x00\x00\x00")
	if !bytes.Equal(local, want) {
		t.Fatalf("v2 LOCAL % x", local)
	}
	v2 := (&Header{Version: 2, Command: Proxy, Source: v4src, Destination: v4dst}).AppendV2(nil)
	want = append([]byte(v2Sig), 0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 10, 198, 51, 100, 1, 0xc8, 0x22, 0x01, 0xbb)
	if !bytes.Equal(v2, want) {
		t.Fatalf("v2 TCP4 % x", v2)
	}
	if got := string((&Header{Version: 1, Command: Local}).AppendV1(nil)); got != "PROXY UNKNOWN\r\n" {
		t.Fatalf("v1 local %q", got)
	}
}

func TestRoundTrips(t *testing.T) {
	mapped := netip.AddrPortFrom(netip.AddrFrom16(v4src.Addr().As16()), v4src.Port())
	cases := []Header{
		{Version: 1, Command: Proxy, Source: v4src, Destination: v4dst},
		{Version: 1, Command: Proxy, Source: v6src, Destination: v6dst},
		{Version: 1, Command: Local},
		{Version: 2, Command: Local},
		{Version: 2, Command: Proxy, Source: v4src, Destination: v4dst},
		{Version: 2, Command: Proxy, Source: v6src, Destination: v6dst, ALPN: []byte("http/1.1"), Authority: "ws.example.com",
			SSL: &SSLInfo{Client: ClientSSL, Version: "TLSv1.3"}},
		{Version: 2, Command: Proxy, Source: v4src, Destination: v4dst, Authority: "pass.test", TLVs: []TLV{{Type: 0xE0, Value: []byte("x")}}},
	}
	for _, h := range cases {
		b := h.Append(nil)
		// Trailing bytes (a ClientHello) must stay unread.
		r := bytes.NewReader(append(b, "\x16\x03\x01rest"...))
		got, err := Read(iotest.OneByteReader(r))
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if !reflect.DeepEqual(*got, h) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", *got, h)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "\x16\x03\x01rest" {
			t.Fatalf("%+v: Read consumed bytes after the header: left %q", h, rest)
		}
	}
	// An IPv4-mapped source with an IPv4 destination is sent as TCP4.
	h := &Header{Version: 1, Command: Proxy, Source: mapped, Destination: v4dst}
	if !strings.HasPrefix(string(h.AppendV1(nil)), "PROXY TCP4 192.0.2.10 ") {
		t.Fatalf("mapped: %q", h.AppendV1(nil))
	}
	// Mixed families become IPv6.
	h = &Header{Version: 1, Command: Proxy, Source: v4src, Destination: v6dst}
	if !strings.HasPrefix(string(h.AppendV1(nil)), "PROXY TCP6 ::ffff:192.0.2.10 ") {
		t.Fatalf("mixed: %q", h.AppendV1(nil))
	}
}

func badSeeds() map[string][]byte {
	good2 := (&Header{Version: 2, Command: Proxy, Source: v4src, Destination: v4dst}).AppendV2(nil)
	bad := func(i int, b byte) []byte { c := append([]byte(nil), good2...); c[i] = b; return c }
	huge := append([]byte(nil), good2[:14]...)
	huge = append(huge, 0xff, 0xff)
	short := append([]byte(nil), good2[:14]...)
	short = append(short, 0x00, 0x04, 1, 2, 3, 4)
	tlvOver := (&Header{Version: 2, Command: Proxy, Source: v4src, Destination: v4dst, Authority: "x"}).AppendV2(nil)
	tlvOver[len(tlvOver)-2] = 0x09 // AUTHORITY claims 9 bytes, has 1
	return map[string][]byte{
		"bad signature": bad(5, 0x01),
		"bad version":   bad(12, 0x31),
		"bad command":   bad(12, 0x22),
		"bad family":    bad(13, 0x51),
		"huge length":   huge,
		"short length":  short,
		"tlv overflow":  tlvOver,
		"v1 no crlf":    []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
		"v1 too long":   []byte("PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n"),
		"v1 bad family": []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
		"v1 v6 in tcp4": []byte("PROXY TCP4 ::1 ::1 1 2\r\n"),
		"v1 bad port":   []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"),
		"v1 port range": []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
		"v1 few fields": []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
		"v1 not proxy":  []byte("PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
		"not a header":  []byte("\x16\x03\x01\x02\x00"),
		"http":          []byte("GET / HTTP/1.1\r\n"),
	}
}

func TestBadHeaders(t *testing.T) {
	for name, b := range badSeeds() {
		h, err := Read(bytes.NewReader(b))
		if err == nil {
			t.Errorf("%s: parsed %+v", name, h)
			continue
		}
		want := ErrMalformed
		if name == "bad signature" || name == "not a header" || name == "http" || name == "v1 not proxy" {
			want = ErrNoHeader
		}
		if name == "v1 no crlf" {
			want = ErrMalformed
		}
		if !errors.Is(err, want) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	// A v1 line is read no further than 107 bytes even if the peer sends more.
	r := bytes.NewReader([]byte("PROXY UNKNOWN " + strings.Repeat("x", 500)))
	_, _ = Read(r)
	if read := 514 - r.Len(); read > MaxV1Len {
		t.Fatalf("read %d bytes of an endless v1 line", read)
	}
}

func TestSignaturePrefix(t *testing.T) {
	cases := []struct {
		in          string
		match, more bool
	}{
		{"PROXY TCP4", true, false},
		{"PRO", false, true},
		{"\r\n\r\n\x00", false, true},
		{v2Sig + "!", true, false},
		{"\r\n\r\nx", false, false},
		{"\x16\x03", false, false},
		{"", false, true},
	}
	for _, c := range cases {
		if m, more := HasSignaturePrefix([]byte(c.in)); m != c.match || more != c.more {
			t.Errorf("%q: %v %v, want %v %v", c.in, m, more, c.match, c.more)
		}
	}
}

// Over real TCP with one byte per write the header still parses and the
// next bytes are left for the caller.
func TestReadOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msg := append((&Header{Version: 2, Command: Proxy, Source: v6src, Destination: v6dst, Authority: "a.test"}).AppendV2(nil), "hello"...)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for i := range msg {
			_, _ = c.Write(msg[i : i+1])
		}
		time.Sleep(500 * time.Millisecond)
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := Read(c)
	if err != nil || h.Source != v6src || h.Authority != "a.test" {
		t.Fatalf("%+v %v", h, err)
	}
	rest := make([]byte, 5)
	if _, err := io.ReadFull(c, rest); err != nil || string(rest) != "hello" {
		t.Fatalf("rest %q %v", rest, err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.10 198.51.100.1 51234 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add((&Header{Version: 2, Command: Local}).AppendV2(nil))
	f.Add((&Header{Version: 2, Command: Proxy, Source: v6src, Destination: v6dst, ALPN: []byte("h2"),
		Authority: "x.test", SSL: &SSLInfo{Client: ClientSSL, Version: "TLSv1.2"}}).AppendV2(nil))
	for _, b := range badSeeds() {
		f.Add(b)
	}
	for _, b := range familySeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := Read(r)
		read := len(in) - r.Len()
		if read > 16+MaxV2Len {
			t.Fatalf("read %d bytes", read)
		}
		// The header arrives in TCP segments of any size: one byte at a time
		// gives the same answer and consumes exactly the same bytes (what
		// follows belongs to the ClientHello).
		r1 := bytes.NewReader(in)
		h1, err1 := Read(iotest.OneByteReader(r1))
		if read1 := len(in) - r1.Len(); read1 != read || (err == nil) != (err1 == nil) || !reflect.DeepEqual(h, h1) {
			t.Fatalf("byte by byte: %+v, %v after %d bytes; at once: %+v, %v after %d bytes", h1, err1, read1, h, err, read)
		}
		if err != nil || h.Command != Proxy || !h.Source.IsValid() {
			return
		}
		again, err := Read(bytes.NewReader(h.Append(nil)))
		if err != nil {
			t.Fatalf("re-encoded header does not parse: %v", err)
		}
		unmap := func(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
		if unmap(again.Source) != unmap(h.Source) || unmap(again.Destination) != unmap(h.Destination) || again.Authority != h.Authority {
			t.Fatalf("re-encode changed %+v to %+v", h, again)
		}
	})
}

// familySeeds are v2 headers of each family and protocol (TCP and UDP over
// IPv4 and IPv6, UNIX stream and datagram, UNSPEC) with TLVs of every kind,
// so the fuzzer starts inside each branch of the decoder.
func familySeeds() [][]byte {
	v2 := func(famProto byte, block []byte) []byte {
		b := append([]byte(v2Sig), 0x21, famProto, byte(len(block)>>8), byte(len(block)))
		return append(b, block...)
	}
	inet := []byte{192, 0, 2, 10, 198, 51, 100, 1, 0xc8, 0x22, 0x01, 0xbb}
	inet6 := append(append(v6src.Addr().AsSlice(), v6dst.Addr().AsSlice()...), 0x9c, 0x40, 0x20, 0xfb)
	unix := make([]byte, 216)
	copy(unix, "/run/src.sock")
	copy(unix[108:], "/run/dst.sock")
	tlvs := []byte{
		0x03, 0x00, 0x04, 1, 2, 3, 4, // CRC32C
		0x04, 0x00, 0x02, 0, 0, // NOOP
		0x05, 0x00, 0x03, 'i', 'd', '1', // UNIQUE_ID
		0x30, 0x00, 0x02, 'n', 's', // NETNS
	}
	ssl := (&Header{Version: 2, Command: Proxy, Source: v4src, Destination: v4dst,
		SSL: &SSLInfo{Client: ClientSSL | 0x02 | 0x04, Version: "TLSv1.3"}}).AppendV2(nil)
	return [][]byte{
		v2(0x11, append(append([]byte(nil), inet...), tlvs...)),
		v2(0x12, inet),
		v2(0x21, append(append([]byte(nil), inet6...), tlvs...)),
		v2(0x22, inet6),
		v2(0x31, unix),
		v2(0x32, unix),
		v2(0x00, nil),
		v2(0x00, tlvs),
		ssl,
		[]byte("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
		[]byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		[]byte("PROXY TCP6 ::ffff:192.0.2.1 ::1 0 0\r\n"),
	}
}
