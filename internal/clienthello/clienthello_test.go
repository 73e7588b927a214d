package clienthello

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// realHello captures the first flight of a crypto/tls client.
func realHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, cfg).Handshake() }()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// reframe splits the handshake message of a one-record hello into records
// of at most size bytes.
func reframe(hello []byte, size int) []byte {
	body := hello[5:]
	var out []byte
	for len(body) > 0 {
		n := min(size, len(body))
		out = append(out, 0x16, 0x03, 0x01, byte(n>>8), byte(n))
		out = append(out, body[:n]...)
		body = body[n:]
	}
	return out
}

func manyProtocols(n int) []string {
	var p []string
	for i := range n {
		p = append(p, fmt.Sprintf("proto-%04d-%s", i, strings.Repeat("x", 16)))
	}
	return p
}

func TestRealHellos(t *testing.T) {
	cases := []struct {
		name string
		cfg  *tls.Config
		sni  string
		alpn []string
	}{
		{"tls13 default", &tls.Config{ServerName: "Example.COM."}, "example.com", nil},
		{"tls12 only", &tls.Config{ServerName: "a.b.test", MaxVersion: tls.VersionTLS12}, "a.b.test", nil},
		{"no sni", &tls.Config{InsecureSkipVerify: true}, "", nil},
		{"alpn", &tls.Config{ServerName: "ws.test", NextProtos: []string{"h2", "http/1.1"}}, "ws.test", []string{"h2", "http/1.1"}},
		{"acme", &tls.Config{ServerName: "ws.test", NextProtos: []string{"acme-tls/1"}}, "ws.test", []string{"acme-tls/1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hello := realHello(t, tc.cfg)
			for _, split := range []int{1 << 14, 100, 7} {
				for _, oneByte := range []bool{false, true} {
					var r io.Reader = bytes.NewReader(reframe(hello, split))
					if oneByte {
						r = iotest.OneByteReader(r)
					}
					raw, info, err := Read(r, 16<<10)
					if err != nil {
						t.Fatalf("split %d: %v", split, err)
					}
					if info.ServerName != tc.sni || !slices.Equal(info.ALPN, tc.alpn) {
						t.Fatalf("split %d: got %q %q, want %q %q", split, info.ServerName, info.ALPN, tc.sni, tc.alpn)
					}
					if !bytes.Equal(raw, reframe(hello, split)) {
						t.Fatalf("split %d: raw bytes differ from the input", split)
					}
				}
			}
		})
	}
	// Go's default TLS 1.3 hello carries a post-quantum key share.
	if h := realHello(t, &tls.Config{ServerName: "pq.test"}); len(h) < 1200 {
		t.Fatalf("default hello %d bytes, expected an X25519MLKEM768 key share", len(h))
	}
}

// A ~9 KiB hello in many records over real TCP, one byte per write.
func TestLargeHelloOverTCP(t *testing.T) {
	hello := reframe(realHello(t, &tls.Config{ServerName: "big.test", NextProtos: manyProtocols(300)}), 512)
	if len(hello) < 8<<10 {
		t.Fatalf("hello is only %d bytes", len(hello))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for i := range hello {
			_, _ = c.Write(hello[i : i+1])
		}
		_, _ = c.Write([]byte("after"))
		time.Sleep(time.Second)
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	raw, info, err := Read(c, 16<<10)
	if err != nil || info.ServerName != "big.test" || len(info.ALPN) != 300 || !bytes.Equal(raw, hello) {
		t.Fatalf("read: %v (%d bytes)", err, len(raw))
	}
	rest := make([]byte, 5)
	if _, err := io.ReadFull(c, rest); err != nil || string(rest) != "after" {
		t.Fatalf("bytes after the hello: %q %v", rest, err)
	}
}

func TestBadInput(t *testing.T) {
	good := realHello(t, &tls.Config{ServerName: "good.test"})
	big := realHello(t, &tls.Config{ServerName: "big.test", NextProtos: manyProtocols(300)})
	badSNI := bytes.Replace(good, []byte("good.test"), []byte("go\x00d.test"), 1)
	emptyLabel := bytes.Replace(good, []byte("good.test"), []byte("good..est"), 1)
	cases := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), 16 << 10, ErrNotTLS},
		{"ssh banner", []byte("SSH-2.0-x\r\n"), 16 << 10, ErrNotTLS},
		{"sslv2-ish version", []byte{0x16, 0x02, 0x00, 0x00, 0x10}, 16 << 10, ErrNotTLS},
		{"record over 16 KiB", []byte{0x16, 0x03, 0x01, 0x40, 0x01}, 16 << 10, ErrMalformed},
		{"zero-length record", []byte{0x16, 0x03, 0x01, 0x00, 0x00}, 16 << 10, ErrMalformed},
		{"server hello", []byte{0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00}, 16 << 10, ErrMalformed},
		{"alert inside", append(reframe(good, 100)[:105], 0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00), 16 << 10, ErrMalformed},
		{"over the cap", big, 4 << 10, ErrTooLarge},
		{"invalid sni", badSNI, 16 << 10, ErrMalformed},
		{"empty label", emptyLabel, 16 << 10, ErrMalformed},
		{"truncated", good[:len(good)-10], 16 << 10, io.ErrUnexpectedEOF},
		{"empty", nil, 16 << 10, io.EOF},
	}
	for _, tc := range cases {
		raw, info, err := Read(bytes.NewReader(tc.in), tc.max)
		if !errors.Is(err, tc.want) || info != nil {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if !bytes.HasPrefix(tc.in, raw) {
			t.Errorf("%s: raw is not a prefix of the input", tc.name)
		}
	}
	// Non-TLS input costs exactly one byte.
	if raw, _, _ := Read(bytes.NewReader([]byte("EHLO")), 16<<10); len(raw) != 1 {
		t.Fatalf("non-TLS consumed %d bytes, want 1", len(raw))
	}
}

func seeds(f *testing.F) [][]byte {
	good := realHello(f, &tls.Config{ServerName: "seed.test", NextProtos: []string{"h2", "http/1.1"}})
	return [][]byte{
		good,
		reframe(good, 50),
		realHello(f, &tls.Config{ServerName: "old.test", MaxVersion: tls.VersionTLS12}),
		realHello(f, &tls.Config{InsecureSkipVerify: true}),
		realHello(f, &tls.Config{ServerName: "pq.test", MinVersion: tls.VersionTLS13,
			CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.X25519}}),
		realHello(f, &tls.Config{ServerName: "p384.test", CurvePreferences: []tls.CurveID{tls.SecP384r1MLKEM1024, tls.CurveP384}}),
		realHello(f, &tls.Config{ServerName: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".test",
			NextProtos: []string{"h2", "http/1.1", "acme-tls/1"}}),
		reframe(good, 1),
		good[:len(good)/2],
		{0x16, 0x03, 0x01, 0xff, 0xff},
		[]byte("GET / HTTP/1.1\r\n"),
	}
}

func FuzzRead(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		raw, info, err := Read(r, 16<<10)
		if !bytes.HasPrefix(in, raw) {
			t.Fatalf("raw is not a prefix of the input")
		}
		if consumed := len(in) - r.Len(); consumed != len(raw) {
			t.Fatalf("consumed %d bytes but returned %d to replay", consumed, len(raw))
		}
		if err == nil && info == nil {
			t.Fatal("nil info without an error")
		}
		// Real hellos arrive in segments of any size: byte by byte, the same.
		raw1, info1, err1 := Read(iotest.OneByteReader(bytes.NewReader(in)), 16<<10)
		if !bytes.Equal(raw1, raw) || (err1 == nil) != (err == nil) || !reflect.DeepEqual(info1, info) {
			t.Fatalf("byte by byte: %d bytes, %+v, %v; at once: %d bytes, %+v, %v", len(raw1), info1, err1, len(raw), info, err)
		}
	})
}

// FuzzAgainstCryptoTLS feeds the same bytes to Read and to a crypto/tls
// server: when both accept the ClientHello they must agree on the server
// name and ALPN list, or l4edge would route a connection by a name the
// backend's TLS stack does not see.
func FuzzAgainstCryptoTLS(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		_, info, err := Read(bytes.NewReader(in), 16<<10)
		if err != nil {
			return
		}
		var seen *tls.ClientHelloInfo
		stop := errors.New("stop after the ClientHello")
		srv := tls.Server(&replayConn{r: bytes.NewReader(in)}, &tls.Config{
			GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) { seen = chi; return nil, stop },
		})
		_ = srv.Handshake()
		if seen == nil {
			return // crypto/tls is stricter; refusing more is not a routing mismatch
		}
		name := strings.ToLower(strings.TrimSuffix(seen.ServerName, "."))
		if name != info.ServerName {
			t.Fatalf("server name: crypto/tls sees %q, Read %q", seen.ServerName, info.ServerName)
		}
		if !slices.Equal(seen.SupportedProtos, info.ALPN) {
			t.Fatalf("ALPN: crypto/tls sees %q, Read %q", seen.SupportedProtos, info.ALPN)
		}
	})
}

// replayConn is the server side of a connection whose client sent exactly
// the bytes of r; what the server writes is discarded.
type replayConn struct {
	net.Conn // nil: any other method panics, which the fuzzer reports
	r        *bytes.Reader
}

func (c *replayConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *replayConn) Write(b []byte) (int, error) { return len(b), nil }
func (c *replayConn) Close() error                { return nil }

func FuzzParse(f *testing.F) {
	for _, s := range seeds(f) {
		if len(s) > 9 {
			f.Add(s[9:])
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		info, err := Parse(in)
		if err == nil && info.ServerName != "" {
			if _, verr := validHost(info.ServerName); verr != nil {
				t.Fatalf("accepted invalid name %q", info.ServerName)
			}
		}
	})
}
