package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap/zaptest"
)

func startServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, name)
}

// serveOn serves ln as backend name until the test ends and returns its address.
func serveOn(t *testing.T, ln net.Listener, name string) string {
	t.Helper()
	s := newServer(name, zaptest.NewLogger(t))
	done := make(chan struct{})
	go func() { _ = s.serve(ln); close(done) }()
	t.Cleanup(func() {
		ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.shutdown(ctx)
	})
	return ln.Addr().String()
}

func TestWebSocketEcho(t *testing.T) {
	addr := startServer(t, "b1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/any/path", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://elsewhere.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if got := resp.Header.Get("X-Backend-Name"); got != "b1" {
		t.Fatalf("X-Backend-Name %q", got)
	}
	c.SetReadLimit(maxMessage)
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	for _, m := range []struct {
		typ  websocket.MessageType
		data []byte
		want []byte
	}{
		{websocket.MessageText, []byte("hello"), []byte("hello")},
		{websocket.MessageBinary, big, big},
		{websocket.MessageText, []byte("whoami"), []byte("b1")},
	} {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != m.typ || !bytes.Equal(got, m.want) {
			t.Fatalf("echo of %d bytes: %v, %d bytes back", len(m.data), err, len(got))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestRawTCPEchoWithHalfClose(t *testing.T) {
	addr := startServer(t, "b1")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)
	payload[0] = 0x16 // a TLS-looking first byte: not HTTP
	go func() { _, _ = c.Write(payload); _ = c.(*net.TCPConn).CloseWrite() }()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("raw echo: %v, %d of %d bytes", err, len(got), len(payload))
	}
	// A short message that is a prefix of no method is echoed too.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, _ = c2.Write([]byte("hi\n"))
	buf := make([]byte, 3)
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "hi\n" {
		t.Fatalf("short raw echo %q %v", buf, err)
	}
}

func TestPlainHTTP(t *testing.T) {
	addr := startServer(t, "b2")
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "b2") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}
