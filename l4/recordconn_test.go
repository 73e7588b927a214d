package l4

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
)

func record(typ byte, body []byte) []byte {
	h := []byte{typ, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(h[3:], uint16(len(body)))
	return append(h, body...)
}

// Three records sent in one write, then a fourth whose header arrives in
// two pieces: no Read returns bytes of two records, and every byte arrives.
func TestRecordConnStopsAtRecordBoundaries(t *testing.T) {
	w, r := testpeer.TCPPair(t)
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

// heldConn passes its first Write (the ClientHello) through and holds the
// later ones until flush, so the client's Finished and its first data
// records reach the proxy in one segment.
type heldConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	held   bytes.Buffer
}

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writes++
	if h.writes == 1 {
		return h.Conn.Write(p)
	}
	return h.held.Write(p)
}

func (h *heldConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.Conn.Write(h.held.Bytes())
	h.held.Reset()
	return err
}

// A terminated connection whose Finished and first two data records arrive
// together relays both records at once, and later records too: a relay
// that waited for the socket while crypto/tls held records it had read
// ahead would hang here.
func TestTerminatedRecordsArrivingTogether(t *testing.T) {
	m := startMixed(t, nil)
	raw, err := net.DialTimeout("tcp", m.h.addr("edge"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	held := &heldConn{Conn: raw}
	c := tls.Client(held, &tls.Config{ServerName: "term.test", RootCAs: m.termPool, MinVersion: tls.VersionTLS13})
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "one\n")
	fmt.Fprint(c, "two\n")
	if err := held.flush(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, want := range []string{"term-backend one", "term-backend two"} {
		line, err := br.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			t.Fatalf("got %q (%v), want %q", line, err, want)
		}
	}
	for i := range 3 { // later records, one segment each
		fmt.Fprintf(c, "later %d\n", i)
		if err := held.flush(); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("term-backend later %d", i); err != nil || strings.TrimSpace(line) != want {
			t.Fatalf("got %q (%v), want %q", line, err, want)
		}
	}
}
