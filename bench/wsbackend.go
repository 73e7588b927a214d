//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// restartWSCommand, a line on the backend's standard input, restarts its
// WebSocket services (the reconnect storm).
const restartWSCommand = "restart-ws"

// wsDowntime is how long a restarted WebSocket service refuses connections.
const wsDowntime = 500 * time.Millisecond

// wsServices are the backend's WebSocket echo services: addr[0] over plain
// HTTP, addr[1] over TLS. restart drops every connection and listens again
// on the same ports after a pause, as a restarted backend process would.
type wsServices struct {
	tlsCfg *tls.Config
	addr   [2]string

	mu    sync.Mutex
	srv   [2]*http.Server
	conns map[*websocket.Conn]struct{}
}

// startWSServices listens on two free loopback ports.
func startWSServices(tlsCfg *tls.Config) (*wsServices, error) {
	ws := &wsServices{tlsCfg: tlsCfg, conns: map[*websocket.Conn]struct{}{}}
	for i := range ws.addr {
		if err := ws.listen(i, "127.0.0.1:0"); err != nil {
			ws.close()
			return nil, err
		}
	}
	return ws, nil
}

// listen serves service i on addr.
func (ws *wsServices) listen(i int, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	ws.addr[i] = ln.Addr().String()
	if i == 1 {
		ln = tls.NewListener(ln, ws.tlsCfg)
	}
	srv := &http.Server{Handler: http.HandlerFunc(ws.echo), ReadHeaderTimeout: opTimeout}
	ws.mu.Lock()
	ws.srv[i] = srv
	ws.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// restart closes both listeners and every connection, waits downtime, and
// listens again on the same addresses.
func (ws *wsServices) restart(downtime time.Duration) error {
	ws.close()
	time.Sleep(downtime)
	for i, a := range ws.addr {
		if err := ws.listen(i, a); err != nil {
			return err
		}
	}
	return nil
}

// close stops both services and drops every connection.
func (ws *wsServices) close() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, s := range ws.srv {
		if s != nil {
			_ = s.Close()
		}
	}
	for c := range ws.conns {
		c.CloseNow()
	}
	clear(ws.conns)
}

// echo sends every message back as it came.
func (ws *wsServices) echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	ws.mu.Lock()
	ws.conns[c] = struct{}{}
	ws.mu.Unlock()
	defer func() {
		ws.mu.Lock()
		delete(ws.conns, c)
		ws.mu.Unlock()
		c.CloseNow()
	}()
	ctx := context.Background()
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, b); err != nil {
			return
		}
	}
}
