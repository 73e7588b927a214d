package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/l4edge/l4edge/internal/testpeer"
)

func TestTLSEcho(t *testing.T) {
	certFile, keyFile, cert := testpeer.CertFiles(t, t.TempDir(), "localhost")
	if _, err := listenOn("127.0.0.1:0", certFile, ""); err == nil || !strings.Contains(err.Error(), "-key") {
		t.Fatalf("cert without key: %v", err)
	}
	ln, err := listenOn("127.0.0.1:0", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, ln, "tls1")
	cfg := &tls.Config{RootCAs: cert.Pool, ServerName: "localhost"}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	c, resp, err := websocket.Dial(ctx, "wss://"+addr+"/", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer c.CloseNow()
	if resp.Header.Get("X-Backend-Name") != "tls1" {
		t.Fatalf("X-Backend-Name %q", resp.Header.Get("X-Backend-Name"))
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("whoami")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "tls1" {
		t.Fatalf("whoami over TLS: %q %v", got, err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")

	// Raw bytes inside TLS are echoed too.
	rc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_ = rc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.Write([]byte("\x00raw bytes")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "\x00raw bytes" {
		t.Fatalf("raw echo over TLS: %q %v", buf, err)
	}
}
