package l4

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// TLS extension numbers the hostile hellos edit.
const (
	extSNI     = 0
	extPadding = 21
)

// helloExt is one extension of a ClientHello.
type helloExt struct {
	typ  uint16
	data []byte
}

// splitHello takes a ClientHello in one record (as testpeer.ClientHello
// returns it) apart into its fixed fields and its extensions.
func splitHello(t *testing.T, rec []byte) (fixed []byte, exts []helloExt) {
	t.Helper()
	s := cryptobyte.String(rec[5+4:]) // record and handshake headers
	var sid, suites, comp, block cryptobyte.String
	if !s.Skip(2+32) || !s.ReadUint8LengthPrefixed(&sid) || !s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&comp) {
		t.Fatal("captured ClientHello does not parse")
	}
	fixed = rec[9 : len(rec)-len(s)]
	if !s.ReadUint16LengthPrefixed(&block) || !s.Empty() {
		t.Fatal("captured ClientHello has a bad extensions block")
	}
	for !block.Empty() {
		var e helloExt
		var data cryptobyte.String
		if !block.ReadUint16(&e.typ) || !block.ReadUint16LengthPrefixed(&data) {
			t.Fatal("captured ClientHello has a bad extension")
		}
		e.data = data
		exts = append(exts, e)
	}
	return fixed, exts
}

// joinHello builds a ClientHello handshake message (with its 4-byte
// header, without a record header) from fixed fields and extensions.
func joinHello(fixed []byte, exts []helloExt) []byte {
	var b cryptobyte.Builder
	b.AddUint8(typeClientHelloMsg)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddBytes(fixed)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range exts {
				b.AddUint16(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
			}
		})
	})
	return b.BytesOrPanic()
}

const typeClientHelloMsg = 1

// records frames a handshake message in TLS records of at most size bytes
// (size may exceed the protocol's 16 KiB, to build a bad record).
func records(msg []byte, size int) []byte {
	return reframe(append(make([]byte, 5), msg...), size)
}

// sniExt is a server_name extension naming host.
func sniExt(host string) helloExt {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(0)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(host)) })
	})
	return helloExt{typ: extSNI, data: b.BytesOrPanic()}
}

// withSNI replaces (or, given "", drops) the server_name extension; extra
// extensions are appended.
func withSNI(exts []helloExt, host *helloExt, extra ...helloExt) []helloExt {
	var out []helloExt
	for _, e := range exts {
		if e.typ == extSNI {
			if host != nil {
				out = append(out, *host)
			}
			continue
		}
		out = append(out, e)
	}
	return append(out, extra...)
}

// padTo adds a padding extension so the handshake message is size bytes.
func padTo(fixed []byte, exts []helloExt, size int) []byte {
	n := size - len(joinHello(fixed, exts)) - 4 // the padding's own header
	return joinHello(fixed, append(exts, helloExt{typ: extPadding, data: make([]byte, n)}))
}

// setLen rewrites a handshake message's 24-bit length.
func setLen(msg []byte, n int) []byte {
	out := bytes.Clone(msg)
	out[1], out[2], out[3] = byte(n>>16), byte(n>>8), byte(n)
	return out
}

// Malformed and extreme ClientHellos, built from real crypto/tls hellos
// (with their post-quantum key shares): each is routed by its SNI or
// closed with invalid_client_hello at once, never left to hang; a normal
// client is served after each.
func TestHostileClientHellos(t *testing.T) {
	m := startMixed(t, func(l *config.Listener) { l.InspectTimeout = time.Second })
	addr := m.h.addr("edge")
	real := testpeer.ClientHello(t, &tls.Config{ServerName: "pass.test"})
	fixed, exts := splitHello(t, real)
	msg := real[5:]
	if !bytes.Equal(joinHello(fixed, exts), msg) {
		t.Fatal("splitHello/joinHello do not round-trip the captured hello")
	}
	long := strings.Repeat("a", 63) + ".pass.test"
	label300 := sniExt(strings.Repeat("a", 300) + ".pass.test")
	emptySNI := sniExt("")
	noList := helloExt{typ: extSNI, data: []byte{0, 0}}
	ccs := []byte{0x14, 0x03, 0x03, 0x00, 0x01, 0x01}

	cases := []struct {
		name  string
		bytes []byte
		route string             // "" means closed with invalid_client_hello
		close closereason.Reason // when route is "": the close reason wanted
	}{
		{"record length over 16 KiB", records(padTo(fixed, exts, 17<<10), 17<<10), "", closereason.InvalidClientHello},
		{"record of 16 KiB + 4 holding a hello at the 16 KiB cap", records(padTo(fixed, exts, 16<<10+4), 16<<10+4), "", closereason.InvalidClientHello},
		{"handshake length 16 MiB", records(setLen(msg, 1<<24-1), 16<<10), "", closereason.InvalidClientHello},
		{"handshake length beyond its records, then a ChangeCipherSpec", append(records(setLen(msg, len(msg)-4+100), 16<<10), ccs...), "", closereason.InvalidClientHello},
		{"handshake length beyond its records, then 100 more bytes", append(records(setLen(msg, len(msg)-4+100), 16<<10), records(make([]byte, 100), 100)...), "", closereason.InvalidClientHello},
		{"handshake length short of its record", records(setLen(msg, len(msg)-4-10), 16<<10), "", closereason.InvalidClientHello},
		{"handshake length beyond its records, then silence", records(setLen(msg, len(msg)-4+100), 16<<10), "", closereason.InspectTimeout},
		{"64 KiB hello over 64 records", records(padTo(fixed, exts, 64<<10), 1<<10), "", closereason.InvalidClientHello},
		{"16 KiB hello over 164 records", records(padTo(fixed, exts, 16<<10+4), 100), "pass", ""},
		{"hello in 1-byte records", records(msg, 1), "pass", ""},
		{"SNI label of 300 bytes", records(joinHello(fixed, withSNI(exts, &label300)), 16<<10), "", closereason.InvalidClientHello},
		{"SNI label of 63 bytes", records(joinHello(fixed, withSNI(exts, ptr(sniExt(long)))), 16<<10), "pass", ""},
		{"empty SNI host name", records(joinHello(fixed, withSNI(exts, &emptySNI)), 16<<10), "", closereason.InvalidClientHello},
		{"SNI extension with an empty list", records(joinHello(fixed, withSNI(exts, &noList)), 16<<10), "", closereason.InvalidClientHello},
		{"no SNI extension", records(joinHello(fixed, withSNI(exts, nil)), 16<<10), "rest", ""},
		{"duplicate server_name", records(joinHello(fixed, withSNI(exts, ptr(sniExt("pass.test")), sniExt("term.test"))), 16<<10), "", closereason.InvalidClientHello},
		{"duplicate padding", records(joinHello(fixed, append(exts, helloExt{extPadding, nil}, helloExt{extPadding, nil})), 16<<10), "", closereason.InvalidClientHello},
	}
	for range 4 { // warm the relay's caches before the baseline
		if reply := ask(t, addr, "warm"); reply != "plain-backend warm" {
			t.Fatalf("warm-up reply %q", reply)
		}
		m.h.next(3 * time.Second)
	}
	acc := accounted(t)
	for _, tc := range cases {
		start := time.Now()
		var rec Record
		if tc.close == closereason.InspectTimeout {
			rec = sendAndWait(t, addr, tc.bytes, m.h) // the client stays silent, open
		} else {
			rec = sendRaw(t, addr, tc.bytes, m.h)
		}
		took := time.Since(start)
		switch {
		case tc.route != "" && (rec.Route != tc.route || rec.Close == closereason.InvalidClientHello):
			t.Fatalf("%s (%d bytes): route %q close %q (%v) after %s, want routed to %q", tc.name, len(tc.bytes), rec.Route, rec.Close, rec.Err, took, tc.route)
		case tc.route == "" && rec.Close != tc.close:
			t.Fatalf("%s (%d bytes): close %q (%v) route %q after %s, want %q", tc.name, len(tc.bytes), rec.Close, rec.Err, rec.Route, took, tc.close)
		case tc.close == closereason.InvalidClientHello && rec.Duration > 500*time.Millisecond:
			t.Fatalf("%s: closed after %s, want at once", tc.name, rec.Duration)
		case rec.Duration > time.Second+2*time.Second:
			t.Fatalf("%s: closed after %s, want within inspect_timeout (1s) + 2s", tc.name, rec.Duration)
		}
		if reply := ask(t, addr, "after"); reply != "plain-backend after" {
			t.Fatalf("after %s: a normal client got %q", tc.name, reply)
		}
		m.h.next(3 * time.Second)
		t.Logf("%-60s %6d bytes: route %q close %s after %s (%v)", tc.name, len(tc.bytes), rec.Route, rec.Close, rec.Duration.Round(10*time.Microsecond), rec.Err)
	}
	t.Log(acc())
}

// sendAndWait writes b, keeps the connection open until l4edge closes it,
// and returns its record.
func sendAndWait(t *testing.T, addr string, b []byte, h *harness) Record {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(b)
	_, _ = readAllTimeout(c, 5*time.Second)
	return h.next(5 * time.Second)
}

func ptr[T any](v T) *T { return &v }

// trickleConn writes one byte per write: with TCP_NODELAY (Go's default)
// every byte leaves in its own segment.
type trickleConn struct {
	net.Conn
	writes int
}

func (c *trickleConn) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
		c.writes++
	}
	return len(p), nil
}

// Real crypto/tls clients whose every byte is its own TCP segment (the
// default hello, with its post-quantum key share, is 1.5-2 KiB) complete a
// terminating and a passthrough handshake.
func TestHelloInOneByteSegments(t *testing.T) {
	m := startMixed(t, nil)
	addr := m.h.addr("edge")
	size := len(testpeer.ClientHello(t, &tls.Config{ServerName: "term.test"}))
	if size < 1400 || size > 2500 {
		t.Fatalf("default ClientHello is %d bytes; want about 1.5 KiB (a 1,216-byte post-quantum key share)", size)
	}
	for _, tc := range []struct {
		sni, route, reply string
		roots             func() *tls.Config
	}{
		{"term.test", "term", "term-backend hi", func() *tls.Config { return &tls.Config{RootCAs: m.termPool} }},
		{"www.pass.test", "pass", "pass-backend hi", func() *tls.Config { return &tls.Config{RootCAs: m.passPool} }},
	} {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		tc1 := &trickleConn{Conn: raw}
		cfg := tc.roots()
		cfg.ServerName = tc.sni
		c := tls.Client(tc1, cfg)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		if err := c.Handshake(); err != nil {
			t.Fatalf("%s: handshake in 1-byte segments: %v", tc.sni, err)
		}
		hs := time.Since(start)
		_, _ = c.Write([]byte("hi\n"))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if got := strings.TrimSpace(string(buf[:n])); err != nil || got != tc.reply {
			t.Fatalf("%s: reply %q %v", tc.sni, got, err)
		}
		writes := tc1.writes
		c.Close()
		if rec := m.h.next(5 * time.Second); rec.Route != tc.route || rec.SNI != tc.sni {
			t.Fatalf("%s: record %+v", tc.sni, rec)
		}
		t.Logf("%s: %d-byte hello, %d one-byte writes in all: handshake %s, routed to %s", tc.sni, size, writes, hs.Round(time.Millisecond), tc.route)
	}
}
