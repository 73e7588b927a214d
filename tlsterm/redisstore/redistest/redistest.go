// Package redistest runs real redis-server processes (plain servers,
// replicas and sentinels) on loopback ports for tests. It is imported only
// from _test.go files. A test is skipped loudly when redis-server is not
// installed (make test installs Debian's redis-server package).
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// Options configure one redis-server.
type Options struct {
	// Password, when set, is required (requirepass) for the default user.
	Password string
	// ReplicaOf is host:port of the primary this server replicates.
	ReplicaOf string
	// Sentinel runs the process as a sentinel monitoring Monitor.
	Sentinel bool
	// MasterName and Monitor (host:port) configure a sentinel.
	MasterName, Monitor string
	// TLS makes the server speak TLS only, with a self-signed certificate
	// for redis.test and 127.0.0.1 (Server.CAFile).
	TLS bool
}

// Server is one redis-server process the test started.
type Server struct {
	t    testing.TB
	Addr string // 127.0.0.1:port
	opts Options
	dir  string
	// CAFile is the PEM certificate a TLS server presents (its own CA).
	CAFile  string
	keyFile string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Binary returns the path of redis-server, skipping the test loudly when
// it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: redis-server is not installed (apt-get install redis-server, or run make test as root)")
	}
	return p
}

// Start runs a redis-server on a free loopback port and waits until it
// answers. The test's cleanup stops it by PID.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	Binary(t)
	s := &Server{t: t, Addr: testpeer.Refusing(t, 1)[0], opts: opts, dir: t.TempDir()}
	if opts.TLS {
		s.writeCert()
	}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Port returns the server's port.
func (s *Server) Port() int { return int(netip.MustParseAddrPort(s.Addr).Port()) }

func (s *Server) args() []string {
	_, port, _ := net.SplitHostPort(s.Addr)
	if s.opts.Sentinel {
		conf := filepath.Join(s.dir, "sentinel.conf")
		host, mport, _ := net.SplitHostPort(s.opts.Monitor)
		body := fmt.Sprintf("port %s\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"+
			"sentinel monitor %s %s %s 2\nsentinel down-after-milliseconds %[3]s 1000\n"+
			"sentinel failover-timeout %[3]s 5000\nsentinel parallel-syncs %[3]s 1\n",
			port, s.dir, s.opts.MasterName, host, mport)
		if _, err := os.Stat(conf); err != nil { // a restart keeps what the sentinel learned
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				s.t.Fatal(err)
			}
		}
		return []string{conf, "--sentinel"}
	}
	args := []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--dir", s.dir, "--logfile", ""}
	if s.opts.TLS {
		args = append(args, "--port", "0", "--tls-port", port, "--tls-cert-file", s.CAFile, "--tls-key-file", s.keyFile,
			"--tls-ca-cert-file", s.CAFile, "--tls-auth-clients", "no")
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password, "--masterauth", s.opts.Password)
	}
	if s.opts.ReplicaOf != "" {
		h, p, _ := net.SplitHostPort(s.opts.ReplicaOf)
		args = append(args, "--replicaof", h, p)
	}
	return args
}

// Restart starts the server again on the same port (after Stop or Kill).
// Without persistence it comes back empty.
func (s *Server) Restart() {
	s.t.Helper()
	cmd := exec.Command(Binary(s.t), s.args()...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(s.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.answers() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s not answering within 10s", s.Addr)
}

// answers reports whether the server replies to PING (NOAUTH counts).
func (s *Server) answers() bool {
	c, err := s.dial(200 * time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}

// Stop ends the server with SIGTERM by PID and waits for it.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL by PID and waits for it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(s.cmd.Process.Pid, sig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Command sends one command (no arguments with spaces) and returns the
// first line of the reply, for tests that poke a server directly.
func (s *Server) Command(args ...string) string {
	s.t.Helper()
	line, err := s.TryCommand(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return line
}

// TryCommand is Command that returns the error instead of failing the
// test: for polling a server that may drop clients (a failover).
func (s *Server) TryCommand(args ...string) (string, error) {
	c, err := s.dial(time.Second)
	if err != nil {
		return "", fmt.Errorf("redis %s: %w", s.Addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	if s.opts.Password != "" && !s.opts.Sentinel {
		fmt.Fprintf(&b, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(s.opts.Password), s.opts.Password)
	}
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", fmt.Errorf("redis %s %v: %w", s.Addr, args, err)
	}
	r := bufio.NewReader(c)
	if s.opts.Password != "" && !s.opts.Sentinel {
		_, _ = r.ReadString('\n')
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("redis %s %v: %w", s.Addr, args, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// dial connects to the server, over TLS when it speaks TLS.
func (s *Server) dial(timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.opts.TLS {
		return tls.DialWithDialer(d, "tcp", s.Addr, &tls.Config{InsecureSkipVerify: true})
	}
	return d.Dial("tcp", s.Addr)
}

// writeCert writes a self-signed certificate for redis.test and 127.0.0.1.
func (s *Server) writeCert() {
	var err error
	s.CAFile, s.keyFile, err = testpeer.Cert(s.t, "redis.test", "127.0.0.1").WriteFiles(s.dir, "redis.crt", "redis.key")
	if err != nil {
		s.t.Fatal(err)
	}
}
