package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// maxMessage is the largest WebSocket message echoed.
const maxMessage = 16 << 20

// httpMethods are the request lines that mark a connection as HTTP.
var httpMethods = []string{"GET ", "POST ", "HEAD ", "PUT ", "OPTIONS ", "DELETE ", "PATCH ", "CONNECT ", "TRACE "}

// server is the echo backend: WebSocket on any path, plain TCP otherwise.
type server struct {
	name string
	log  *zap.Logger
	http *http.Server
	// httpConns feeds HTTP connections, sniffed by serveConn, to http.Server.
	httpConns *chanListener
	wg        sync.WaitGroup
}

func newServer(name string, log *zap.Logger) *server {
	s := &server{name: name, log: log}
	s.http = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	return s
}

// serve accepts until ln is closed.
func (s *server) serve(ln net.Listener) error {
	s.httpConns = newChanListener(ln.Addr())
	s.wg.Add(1)
	go func() { defer s.wg.Done(); _ = s.http.Serve(s.httpConns) }()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.httpConns.Close()
			return err
		}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.serveConn(c) }()
	}
}

// shutdown stops the HTTP side and waits for handlers.
func (s *server) shutdown(ctx context.Context) {
	_ = s.http.Shutdown(ctx)
	s.wg.Wait()
}

// serveConn sniffs the first bytes: an HTTP request line goes to the HTTP
// server, anything else is echoed as raw TCP.
func (s *server) serveConn(c net.Conn) {
	head := make([]byte, 8)
	n, err := c.Read(head[:1]) // the first byte: no deadline, a client may think first
	if err != nil || n == 0 {
		c.Close()
		return
	}
	// Wait briefly for a whole method token; a short raw message is echoed.
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	m, _ := io.ReadFull(c, head[1:])
	_ = c.SetReadDeadline(time.Time{})
	head = head[:1+m]
	pc := &peekedConn{Conn: c, r: io.MultiReader(bytes.NewReader(head), c)}
	for _, method := range httpMethods {
		if strings.HasPrefix(string(head), method) {
			s.httpConns.push(pc)
			return
		}
	}
	defer c.Close()
	_, _ = io.Copy(c, pc.r)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// serveHTTP answers WebSocket upgrades with an echo, other requests with a
// short text naming the backend.
func (s *server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Backend-Name", s.name)
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		_, _ = io.WriteString(w, "wsecho "+s.name+"\n")
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Debug("websocket accept", zap.Error(err))
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(maxMessage)
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure || errors.Is(err, io.EOF) {
				_ = c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		if typ == websocket.MessageText && string(msg) == "whoami" {
			msg = []byte(s.name)
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// peekedConn replays what the sniffing reader buffered.
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// chanListener is a net.Listener fed by serveConn.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

// Accept returns the next sniffed HTTP connection.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops Accept.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr is the real listener's address.
func (l *chanListener) Addr() net.Addr { return l.addr }
