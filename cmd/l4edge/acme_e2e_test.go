//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// acmeConfig terminates wss for name with an ACME certificate from Pebble.
func acmeConfig(p *pebble, listen, httpListen, storage, backend, name string, challenges string) string {
	httpLine := ""
	if httpListen != "" {
		httpLine = "    http_listen: " + httpListen
	}
	return fmt.Sprintf(`
log: {level: info, format: json}
tls:
  acme:
    email: ops@example.test
    ca: %s
    ca_roots: [%s]
    challenges: [%s]
%s
  storage: {file: %s}
listeners:
  - name: edge
    listen: %s
    routes:
      - name: wss
        match: {sni: [%s]}
        tls: {mode: terminate, cert: acme}
        pool: ws
pools:
  ws:
    backends: [{address: "%s"}]
`, p.DirectoryURL, p.RootsFile, challenges, httpLine, storage, listen, name, backend)
}

// waitCertificate polls until addr serves a certificate for name that
// verifies against Pebble's roots.
func waitCertificate(t *testing.T, p *pebble, addr, name string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr,
			&tls.Config{ServerName: name, RootCAs: p.IssuerRoots, NextProtos: []string{"http/1.1"}})
		if err == nil {
			c.Close()
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no valid certificate for %s within %s: %v", name, within, last)
}

// wssExchange sends n messages over wss:// through addr and checks the echoes.
func wssExchange(t *testing.T, p *pebble, addr, name string, n int) {
	t.Helper()
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.IssuerRoots, ServerName: name},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+name+"/", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer c.CloseNow()
	for i := range n {
		msg := fmt.Sprintf("message %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("echo %d: %q %v", i, got, err)
		}
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
}

// TLS-ALPN-01 answered on l4edge's own traffic listener; a verified wss
// client exchanges 100 messages; a restart reuses the stored certificate.
func TestACMETLSALPN01(t *testing.T) {
	ports := testpeer.FreePorts(t, 3)
	tlsPort := ports[0]
	p := startPebble(t, ports[1], tlsPort)
	backend := fmt.Sprintf("127.0.0.1:%d", ports[2])
	startProc(t, filepath.Join(binDir, "wsecho"), "-listen", backend, "-name", "b")
	waitListening(t, backend, 10*time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	storage := t.TempDir()
	cfg := acmeConfig(p, addr, "", storage, backend, "ws.acme.test", "tls-alpn-01")
	first := startL4edge(t, cfg, addr)
	waitCertificate(t, p, addr, "ws.acme.test", 30*time.Second)
	wssExchange(t, p, addr, "ws.acme.test", 100)
	if got := p.ordered(); !slices.Equal(got, []string{"ws.acme.test"}) {
		t.Fatalf("orders %v, want exactly one for ws.acme.test", got)
	}
	first.waitLog(5*time.Second, `"msg":"connection"`, `"close":"acme_challenge"`)

	first.signal(15) // SIGTERM
	if code := first.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	startL4edge(t, cfg, addr)
	waitCertificate(t, p, addr, "ws.acme.test", 10*time.Second)
	if got := p.ordered(); len(got) != 1 {
		t.Fatalf("the restart made a new order: %v", got)
	}
}

// HTTP-01 on tls.acme.http_listen, which redirects other requests to https.
func TestACMEHTTP01(t *testing.T) {
	ports := testpeer.FreePorts(t, 3)
	httpPort, tlsPort := ports[0], ports[1]
	p := startPebble(t, httpPort, tlsPort)
	backend := fmt.Sprintf("127.0.0.1:%d", ports[2])
	startProc(t, filepath.Join(binDir, "wsecho"), "-listen", backend, "-name", "b")
	waitListening(t, backend, 10*time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	startL4edge(t, acmeConfig(p, addr, httpAddr, t.TempDir(), backend, "web.acme.test", "http-01"), addr)
	waitCertificate(t, p, addr, "web.acme.test", 30*time.Second)
	wssExchange(t, p, addr, "web.acme.test", 10)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/some/path?q=1", nil)
	req.Host = "web.acme.test"
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://web.acme.test/some/path?q=1" {
		t.Fatalf("redirect %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// On-demand: an allowed name gets a certificate at its first handshake; a
// name outside allow fails fast and never reaches the CA.
func TestACMEOnDemand(t *testing.T) {
	ports := testpeer.FreePorts(t, 3)
	tlsPort := ports[0]
	p := startPebble(t, ports[1], tlsPort)
	backend := fmt.Sprintf("127.0.0.1:%d", ports[2])
	startProc(t, filepath.Join(binDir, "wsecho"), "-listen", backend, "-name", "b")
	waitListening(t, backend, 10*time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	cfg := fmt.Sprintf(`
log: {level: info, format: json}
tls:
  acme:
    email: ops@example.test
    ca: %s
    ca_roots: [%s]
    challenges: [tls-alpn-01]
    on_demand: {allow: ["*.tenants.test"]}
  storage: {file: %s}
listeners:
  - name: edge
    listen: %s
    routes:
      - name: tenants
        match: {sni: ["*.tenants.test", "*.other.test"]}
        tls: {mode: terminate, cert: acme}
        pool: ws
pools:
  ws:
    backends: [{address: "%s"}]
`, p.DirectoryURL, p.RootsFile, t.TempDir(), addr, backend)
	l4 := startL4edge(t, cfg, addr)
	if len(p.ordered()) != 0 {
		t.Fatalf("orders before any handshake: %v", p.ordered())
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "shop.tenants.test", RootCAs: p.IssuerRoots})
	if err != nil {
		t.Fatalf("allowed name at its first handshake: %v", err)
	}
	c.Close()
	start := time.Now()
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "evil.other.test", InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("a name outside on_demand.allow got a certificate")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("refusing a disallowed name took %s", el)
	}
	if got := p.ordered(); !slices.Equal(got, []string{"shop.tenants.test"}) {
		t.Fatalf("Pebble orders %v, want only shop.tenants.test", got)
	}
	l4.waitLog(5*time.Second, "on-demand certificate refused", "evil.other.test")
}
