//go:build linux

package tlsrelay

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/relayloop"
)

// dribbleConn is a client socket that, once on, sends each write a byte at
// a time with a pause between bytes: TLS records reach the proxy in pieces.
type dribbleConn struct {
	*net.TCPConn
	on, done atomic.Bool
}

func (d *dribbleConn) Write(p []byte) (int, error) {
	if !d.on.Load() {
		return d.TCPConn.Write(p)
	}
	for i := range p {
		if _, err := d.TCPConn.Write(p[i : i+1]); err != nil {
			return i, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.done.Store(true)
	return len(p), nil
}

// inLoop relays a terminated connection in loops and returns its client.
func inLoop(t *testing.T, loops *relayloop.Relay, wrap func(*net.TCPConn) net.Conn) net.Conn {
	t.Helper()
	peerC, proxyC := tcpPipe(t)
	proxyB, peerB := tcpPipe(t)
	server, client := handshake(t, proxyC, wrap(peerC))
	go echo(peerB)
	if err := New().StartInLoop(loops, &relayloop.Flow{}, Leg{Conn: server, TCP: proxyC}, proxyB, 0, relayloop.DoneFunc(func(relayloop.Result) {})); err != nil {
		t.Fatal(err)
	}
	return client
}

// A record that arrives a byte at a time holds no loop: while it trickles
// in, another connection in the same loop echoes again and again, and the
// record's message still arrives whole once its last byte is in.
func TestInLoopRecordInPieces(t *testing.T) {
	loops, err := relayloop.New(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(loops.Close)
	slowSock := &dribbleConn{}
	slow := inLoop(t, loops, func(c *net.TCPConn) net.Conn { slowSock.TCPConn = c; return slowSock })
	fast := inLoop(t, loops, func(c *net.TCPConn) net.Conn { return c })

	msg := bytes.Repeat([]byte("piecemeal "), 10)
	slowSock.on.Store(true)
	go func() { _, _ = slow.Write(msg) }() // about 120 bytes: over half a second
	time.Sleep(20 * time.Millisecond)      // the record's first bytes are in
	for range 10 {
		testpeer.EchoOnce(t, fast, "meanwhile")
	}
	if slowSock.done.Load() {
		t.Fatal("the other connection's echoes waited for the record in pieces")
	}
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(slow, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("the record in pieces came back as %q, %v", got, err)
	}
}

// A client that reads nothing for a while gets every byte the backend sent
// once it reads: sealed records wait in the loop for the socket to take
// them, and the backend is read again only then (4 MiB is far more than
// both sockets' buffers).
func TestInLoopClientReadsLate(t *testing.T) {
	r := start(t, loopMode(), 0)
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	go func() {
		_, _ = r.backend.Write(data)
		_ = r.backend.CloseWrite()
	}()
	time.Sleep(200 * time.Millisecond)
	_ = r.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(r.client)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("client read %d of %d bytes, equal %v, %v", len(got), len(data), bytes.Equal(got, data), err)
	}
	r.closeWrite()
	if res := r.result(t, 5*time.Second); res.ToClient != int64(len(data)) || res.Err != nil {
		t.Fatalf("result: %+v", res)
	}
}

// Bursts of more records than one step opens (five full ones and a bit)
// come back whole, each before the next is sent: records the session had
// already read from the socket when the step stopped for room are opened
// in the next step, with no new event to announce them.
func TestInLoopBurstsEchoWhole(t *testing.T) {
	r := start(t, loopMode(), 0)
	go echo(r.backend)
	burst := make([]byte, 5*copyBufferSize+100) // copyBufferSize: one record's plaintext
	got := make([]byte, len(burst))
	for i := range 50 {
		for j := range burst {
			burst[j] = byte(i + j)
		}
		if _, err := r.client.Write(burst); err != nil {
			t.Fatal(err)
		}
		_ = r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(r.client, got); err != nil || !bytes.Equal(got, burst) {
			t.Fatalf("burst %d came back incomplete or changed: %v", i, err)
		}
	}
}

// replayingConn is a proxy socket whose reader still holds bytes read
// before the handshake, as l4's replay of a peeked ClientHello would if the
// handshake had not consumed them.
type replayingConn struct {
	*net.TCPConn
	buffered int
}

func (c *replayingConn) Buffered() int { return c.buffered }

// StartInLoop refuses a connection whose reader under the TLS still holds
// bytes (the loop reads the socket only, so they would be lost), touching
// nothing: the same connection then relays in goroutines.
func TestInLoopRefusesBufferedBytes(t *testing.T) {
	peerC, proxyC := tcpPipe(t)
	proxyB, peerB := tcpPipe(t)
	under := &replayingConn{TCPConn: proxyC}
	tc, client := handshake(t, under, peerC)
	loops, err := relayloop.New(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(loops.Close)
	front := Leg{Conn: tc, TCP: proxyC}
	done := relayloop.DoneFunc(func(relayloop.Result) {})
	rl := New()
	under.buffered = 1
	if err := rl.StartInLoop(loops, &relayloop.Flow{}, front, proxyB, 0, done); err == nil {
		t.Fatal("StartInLoop took a connection with buffered bytes")
	}
	go echo(peerB)
	rl.Relay(front, Leg{Conn: proxyB, TCP: proxyB}, 0, done)
	testpeer.EchoOnce(t, client, "after the refusal")
}
