//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/proxyproto"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// needBinary skips loudly when a Debian package is missing; `make test`
// installs them, so in CI nothing skips.
func needBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIPPED LOUDLY: %s not installed; `make test` installs it (apt-get install %s)", name, pkg)
	}
	return p
}

// nginx as a backend with `listen ... proxy_protocol` logs the address
// l4edge sends, for v1 and v2: it is the test client's.
func TestNginxBackendSeesClientAddress(t *testing.T) {
	nginx := needBinary(t, "nginx", "nginx libnginx-mod-stream")
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			ports := testpeer.FreePorts(t, 2)
			nport := ports[0]
			conf := fmt.Sprintf(`
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
stream {
  log_format pp '$proxy_protocol_addr:$proxy_protocol_port';
  server {
    listen 127.0.0.1:%[2]d proxy_protocol;
    access_log %[1]s/access.log pp;
    return "hello from nginx\n";
  }
}
`, dir, nport)
			if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			startProc(t, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
			waitListening(t, fmt.Sprintf("127.0.0.1:%d", nport), 10*time.Second)

			addr := fmt.Sprintf("127.0.0.1:%d", ports[1])
			startL4edge(t, fmt.Sprintf(`
log: {level: info, format: json}
listeners:
  - name: edge
    listen: %s
    routes: [{name: all, pool: nginx}]
pools:
  nginx:
    proxy_protocol: %s
    backends: [{address: "127.0.0.1:%d"}]
`, addr, version, nport), addr)
			c := testpeer.DialFrom(t, "127.0.0.3", addr)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			reply, err := io.ReadAll(c)
			if err != nil || string(reply) != "hello from nginx\n" {
				t.Fatalf("reply %q %v", reply, err)
			}
			want := c.LocalAddr().String()
			deadline := time.Now().Add(5 * time.Second)
			for {
				logged, _ := os.ReadFile(filepath.Join(dir, "access.log"))
				if strings.Contains(string(logged), want) {
					return
				}
				if time.Now().After(deadline) {
					errs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
					t.Fatalf("nginx logged %q, want %s\nerror.log:\n%s", logged, want, errs)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// HAProxy in front of l4edge with send-proxy-v2 (and send-proxy): l4edge's
// access log and the header it sends on carry the original client.
func TestHAProxyInFront(t *testing.T) {
	haproxy := needBinary(t, "haproxy", "haproxy")
	for _, send := range []string{"send-proxy-v2", "send-proxy"} {
		t.Run(send, func(t *testing.T) {
			headers := make(chan *proxyproto.Header, 16)
			backendAddr := testpeer.Serve(t, func(c *net.TCPConn) {
				h, err := proxyproto.Read(c)
				if err != nil {
					return
				}
				headers <- h
				_, _ = io.Copy(c, c)
			}).Addr()
			ports := testpeer.FreePorts(t, 2)
			l4addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
			l4 := startL4edge(t, fmt.Sprintf(`
log: {level: info, format: json}
listeners:
  - name: edge
    listen: %s
    proxy_protocol_in: {trusted: [127.0.0.1/32], timeout: 2s}
    routes: [{name: all, pool: p}]
pools:
  p:
    proxy_protocol: v2
    backends: [{address: "%s"}]
`, l4addr, backendAddr), l4addr)
			hport := ports[1]
			dir := t.TempDir()
			cfg := fmt.Sprintf(`
global
  maxconn 100
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:%d
  default_backend be
backend be
  server l4 %s %s
`, hport, l4addr, send)
			if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			startProc(t, haproxy, "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
			waitListening(t, fmt.Sprintf("127.0.0.1:%d", hport), 10*time.Second)

			c := testpeer.DialFrom(t, "127.0.0.2", fmt.Sprintf("127.0.0.1:%d", hport))
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte("ping"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("echo through HAProxy and l4edge: %q %v", buf, err)
			}
			want := c.LocalAddr().String()
			for found := false; !found; {
				select {
				case h := <-headers:
					found = h.Source.String() == want // readiness probes come from 127.0.0.1
				case <-time.After(5 * time.Second):
					t.Fatalf("backend got no PROXY header with source %s", want)
				}
			}
			c.Close()
			l4.waitLog(5*time.Second, `"msg":"connection"`, `"client":"`+want+`"`)
		})
	}
}
