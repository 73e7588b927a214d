//go:build linux

package tlsrelay

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPipe returns both ends of a real loopback TCP connection.
func tcpPipe(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); s.Close() })
	return d, s
}

func record(typ byte, body []byte) []byte {
	h := []byte{typ, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(h[3:], uint16(len(body)))
	return append(h, body...)
}

// Three records sent in one write, then a fourth whose header arrives in
// two pieces: no Read returns bytes of two records, and every byte arrives.
func TestRecordConnStopsAtRecordBoundaries(t *testing.T) {
	w, r := tcpPipe(t)
	recs := [][]byte{record(22, bytes.Repeat([]byte{1}, 300)), record(23, nil), record(23, bytes.Repeat([]byte{2}, 16401))}
	last := record(21, []byte{9, 9})
	go func() {
		_, _ = w.Write(bytes.Join(recs, nil))
		_, _ = w.Write(last[:2])
		time.Sleep(20 * time.Millisecond)
		_, _ = w.Write(last[2:])
		_ = w.CloseWrite()
	}()
	rc := &recordConn{Conn: r}
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	ends := []int{} // offsets where records end
	off := 0
	for _, rec := range append(recs, last) {
		off += len(rec)
		ends = append(ends, off)
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := rc.Read(buf)
		before := len(got)
		got = append(got, buf[:n]...)
		for _, e := range ends {
			if before < e && len(got) > e {
				t.Fatalf("one Read returned bytes %d..%d, across the record end at %d", before, len(got), e)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := bytes.Join(append(recs, last), nil); !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d", len(got), len(want))
	}
}
