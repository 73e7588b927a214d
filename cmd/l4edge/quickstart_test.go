//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// The quickstart as a user runs it: examples/quickstart.yaml in front of
// two wsecho processes; four wss:// clients exchange messages and between
// them see both backends.
func TestQuickstart(t *testing.T) {
	raw, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ports := testpeer.FreePorts(t, 3)
	edge, b1, b2 := ports[0], ports[1], ports[2]
	cfg := strings.NewReplacer(
		"127.0.0.1:8443", fmt.Sprintf("127.0.0.1:%d", edge),
		"127.0.0.1:9001", fmt.Sprintf("127.0.0.1:%d", b1),
		"127.0.0.1:9002", fmt.Sprintf("127.0.0.1:%d", b2),
	).Replace(string(raw))
	if strings.Contains(cfg, "8443") || strings.Contains(cfg, "9001") {
		t.Fatal("quickstart ports not replaced; the test no longer matches the file")
	}
	for i, port := range []int{b1, b2} {
		startProc(t, filepath.Join(binDir, "wsecho"), "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-name", fmt.Sprintf("backend-%d", i+1))
		waitListening(t, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", edge)
	startL4edge(t, cfg, addr)

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}}}
	seen := map[string]bool{}
	for i := range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, resp, err := websocket.Dial(ctx, "wss://"+addr+"/chat", &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			cancel()
			t.Fatalf("client %d: %v", i, err)
		}
		name := resp.Header.Get("X-Backend-Name")
		for j := range 10 {
			msg := fmt.Sprintf("client %d message %d", i, j)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
				t.Fatalf("echo %q: %q %v", msg, got, err)
			}
		}
		_ = c.Write(ctx, websocket.MessageText, []byte("whoami"))
		_, who, err := c.Read(ctx)
		if err != nil || string(who) != name {
			t.Fatalf("whoami %q, header %q, %v", who, name, err)
		}
		seen[name] = true
		_ = c.Close(websocket.StatusNormalClosure, "")
		cancel()
	}
	if !seen["backend-1"] || !seen["backend-2"] {
		t.Fatalf("backends seen: %v", seen)
	}
	// The certificate is the self-signed one for localhost.
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if leaf := conn.ConnectionState().PeerCertificates[0]; !strings.Contains(strings.Join(leaf.DNSNames, ","), "localhost") {
		t.Fatalf("certificate names %v", leaf.DNSNames)
	}
}
