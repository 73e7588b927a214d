//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// Three wsecho backends behind websocket health checks. One is killed while
// 500 connections run: it is marked unhealthy within fall*interval+timeout
// and no client sees an error. Restarted, it is healthy after rise passes
// and gets traffic again.
func TestKillBackendUnderLoad(t *testing.T) {
	ports := testpeer.FreePorts(t, 4) // three backends and l4edge
	addr := fmt.Sprintf("127.0.0.1:%d", ports[3])
	ports = ports[:3]
	backends := make([]*proc, 3)
	startBackend := func(i int) {
		backends[i] = startProc(t, filepath.Join(binDir, "wsecho"), "-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]), "-name", fmt.Sprintf("b%d", i))
		waitListening(t, fmt.Sprintf("127.0.0.1:%d", ports[i]), 10*time.Second)
	}
	for i := range backends {
		startBackend(i)
	}
	var addrs []string
	for _, p := range ports {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	cfg := edgeConfig(addr, "", "    connect_attempts: 3\n    health: {check: websocket, path: /, interval: 200ms, timeout: 300ms, rise: 2, fall: 2}\n", addrs...)
	l4 := startL4edge(t, cfg, addr)
	victim := fmt.Sprintf("127.0.0.1:%d", ports[1])

	var killedAt time.Time
	for i := range 500 {
		if i == 100 {
			backends[1].signal(syscall.SIGKILL)
			killedAt = time.Now()
			// A connection accepted by the dying process's socket is reset
			// after its bytes were forwarded: no L4 proxy can retry that.
			// From its death on, refused dials are retried and nobody notices.
			backends[1].wait(5 * time.Second)
		}
		echoRoundTrip(t, addr, []byte(fmt.Sprintf("message %d", i)))
	}
	line := l4.waitLog(5*time.Second, `"backend state changed"`, victim, `"new":"unhealthy"`)
	if el := logTime(t, line).Sub(killedAt); el > 2*200*time.Millisecond+300*time.Millisecond+150*time.Millisecond {
		t.Fatalf("unhealthy %s after the kill, want within fall*interval+timeout", el)
	}
	startBackend(1)
	l4.waitLog(5*time.Second, `"backend state changed"`, victim, `"new":"healthy"`)
	for i := range 30 {
		echoRoundTrip(t, addr, []byte(fmt.Sprintf("after %d", i)))
	}
	served := 0
	for _, e := range l4.accessLogs()[500:] {
		if e["backend"] == victim && e["close"] == "client_closed" {
			served++
		}
	}
	if served == 0 {
		t.Fatal("the restarted backend got no traffic")
	}
}

// logTime reads a JSON log line's ts field.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	i := strings.Index(line, `"ts":"`)
	if i < 0 {
		t.Fatalf("no ts in %s", line)
	}
	s := line[i+6:]
	ts, err := time.Parse(time.RFC3339Nano, s[:strings.IndexByte(s, '"')])
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// close_on_unhealthy: when a backend turns unhealthy, its open connections
// are closed (clients reconnect elsewhere) and logged as backend_down.
func TestCloseOnUnhealthy(t *testing.T) {
	// The backend echoes; closing its listener makes tcp checks fail while
	// the connection already open keeps working.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backendAddr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	addr := testpeer.FreeAddrs(t, 1)[0]
	l4 := startL4edge(t, fmt.Sprintf(`
log: {level: info, format: json}
listeners:
  - name: edge
    listen: %s
    routes: [{name: all, pool: p}]
pools:
  p:
    close_on_unhealthy: true
    backends: [{address: "%s"}]
    health: {check: tcp, interval: 100ms, timeout: 200ms, rise: 1, fall: 2}
`, addr, backendAddr), addr)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("x"))
	buf := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	ln.Close() // new connections are refused; the open one still works
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("want EOF when l4edge closes the connection: %v", err)
	}
	l4.waitLog(3*time.Second, `"msg":"connection"`, `"close":"backend_down"`)
}
