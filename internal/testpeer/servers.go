package testpeer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Server is a TCP server on 127.0.0.1:0 that runs one handler per
// connection until the test ends.
type Server struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
	n    int
}

// Serve runs handle for every connection to a new listener on 127.0.0.1:0;
// handle's connection is closed when it returns. When the test ends the
// listener closes and the handlers are waited for; connections still open
// after 5 s are closed to end their handlers.
func Serve(t testing.TB, handle func(c *net.TCPConn)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testpeer: listen on 127.0.0.1:0: %v", err)
	}
	s := &Server{ln: ln, open: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept(handle)
	t.Cleanup(s.stop)
	return s
}

func (s *Server) accept(handle func(c *net.TCPConn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.n++
		s.open[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.forget(c)
			handle(c.(*net.TCPConn))
		}()
	}
}

func (s *Server) forget(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
}

func (s *Server) stop() {
	s.ln.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(5 * time.Second):
	}
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	<-done
}

// Addr is the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Conns is how many connections the server has accepted so far.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Echo runs an EchoHandler server until the test ends.
func Echo(t testing.TB) *Server {
	t.Helper()
	return Serve(t, EchoHandler)
}

// Lines runs a server that answers each line with "NAME LINE" (see
// ServeLines) until the test ends.
func Lines(t testing.TB, name string) *Server {
	t.Helper()
	return Serve(t, func(c *net.TCPConn) { ServeLines(name, c) })
}

// Sink runs a SinkHandler server until the test ends.
func Sink(t testing.TB) *Server {
	t.Helper()
	return Serve(t, SinkHandler)
}

// EchoHandler copies everything back and passes the FIN on.
func EchoHandler(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

// SinkHandler reads and discards everything until EOF.
func SinkHandler(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) }

// ServeLines answers each line read from c with "NAME LINE" (the line with
// its newline, after name and a space) until c ends.
func ServeLines(name string, c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s %s", name, line)
	}
}
