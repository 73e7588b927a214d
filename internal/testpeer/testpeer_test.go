package testpeer

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
)

// Pool and Listener carry config's own defaults for every key not given,
// and the keys given.
func TestConfigDefaults(t *testing.T) {
	p := Pool("web", "connect_timeout: 1s", "127.0.0.1:8080", "127.0.0.1:8081")
	if p.Name != "web" || p.Policy != config.PolicyRoundRobin || p.ConnectTimeout != time.Second ||
		p.ConnectAttempts != config.DefaultConnectAttempts || p.PassiveFall != config.DefaultPassiveFall ||
		p.PassiveCooldown != config.DefaultPassiveCooldown || len(p.Backends) != 2 || p.Backends[1].Weight != 1 {
		t.Fatalf("pool %+v", p)
	}
	l := Listener("edge", "inspect_timeout: 2s")
	if l.Name != "edge" || l.Listen != "127.0.0.1:0" || l.InspectTimeout != 2*time.Second ||
		l.HandshakeTimeout != config.DefaultHandshakeTimeout || l.IPv6PrefixLength != config.DefaultIPv6Prefix || len(l.Routes) != 0 {
		t.Fatalf("listener %+v", l)
	}
	c := Config(t, "listeners: [{listen: \"127.0.0.1:0\", routes: [{pool: p}]}]\npools: {p: {backends: [{address: \"127.0.0.1:1\"}]}}\n")
	if c.ShutdownGrace != config.DefaultShutdownGrace || c.Log.Level != config.DefaultLogLevel || c.Listeners[0].Name != "listener0" {
		t.Fatalf("config %+v", c)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "passive_fall") {
			t.Fatalf("a pool that does not load: recovered %v", r)
		}
	}()
	Pool("bad", "passive_fall: 0", "127.0.0.1:1")
}

// Echo echoes and passes the FIN on; Lines names itself; Sink counts.
func TestServers(t *testing.T) {
	echo := Echo(t)
	c, err := net.Dial("tcp", echo.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("ping"))
	_ = c.(*net.TCPConn).CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != "ping" {
		t.Fatalf("echo: %q %v", b, err)
	}
	c.Close()

	lines := Lines(t, "b1")
	c, err = net.Dial("tcp", lines.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "hello\n")
	if reply, err := bufio.NewReader(c).ReadString('\n'); err != nil || reply != "b1 hello\n" {
		t.Fatalf("lines: %q %v", reply, err)
	}

	sink := Sink(t)
	for range 3 {
		c, err := net.Dial("tcp", sink.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("into the void"))
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for sink.Conns() != 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := sink.Conns(); n != 3 {
		t.Fatalf("sink accepted %d connections, want 3", n)
	}
}

// A server whose handler never returns on its own still stops at the end
// of the test: its connections are closed after the grace.
func TestServerStopsStuckHandlers(t *testing.T) {
	ended := make(chan struct{})
	outer := t
	t.Run("stuck", func(t *testing.T) {
		s := Serve(t, func(c *net.TCPConn) {
			defer close(ended)
			_, _ = c.Read(make([]byte, 1)) // the client never writes
		})
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		outer.Cleanup(func() { c.Close() }) // open until after the server stopped
		for s.Conns() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	})
	select {
	case <-ended:
	default:
		t.Fatal("the handler was still running after the test's cleanup")
	}
}

// Addresses drawn together are distinct, below the ephemeral port range,
// and refuse connections.
func TestFreeAddrs(t *testing.T) {
	addrs := FreeAddrs(t, 50)
	ephemeral := ephemeralStart()
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s drawn twice", a)
		}
		seen[a] = true
		if p := int(netip.MustParseAddrPort(a).Port()); p >= ephemeral {
			t.Fatalf("%s is in the ephemeral port range (from %d)", a, ephemeral)
		}
	}
	if c, err := net.DialTimeout("tcp", Refusing(t, 1)[0], time.Second); err == nil {
		c.Close()
		t.Fatal("a refusing address accepted a connection")
	}
	if ports := FreePorts(t, 2); ports[0] == ports[1] || ports[0] == 0 {
		t.Fatalf("ports %v", ports)
	}
}

// A client that trusts Pool verifies the certificate by name and by
// address.
func TestCert(t *testing.T) {
	c := Cert(t, "a.test", "*.b.test", "127.0.0.1")
	s := Serve(t, func(conn *net.TCPConn) {
		_ = tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{c.TLS}}).Handshake()
	})
	for _, name := range []string{"a.test", "x.b.test", "127.0.0.1"} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", s.Addr(), &tls.Config{RootCAs: c.Pool, ServerName: name})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		conn.Close()
	}
	if conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: c.Pool, ServerName: "other.test"}); err == nil {
		conn.Close()
		t.Fatal("the certificate verified for a name it does not cover")
	}
	certFile, keyFile, _ := CertFiles(t, t.TempDir(), "files.test")
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil || pair.Leaf.DNSNames[0] != "files.test" {
		t.Fatalf("files: %v", err)
	}
}

// recorder is a test that notes a failure instead of ending.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

// LeakCheck passes when what was started is gone and fails on a goroutine
// or a descriptor left behind.
func TestLeakCheck(t *testing.T) {
	check := LeakCheck(t)
	a, b := TCPPair(t)
	a.Close()
	b.Close()
	check()

	r := &recorder{TB: t}
	check = LeakCheck(r)
	stop := make(chan struct{})
	go func() { <-stop }()
	check()
	close(stop)
	if !strings.Contains(r.failed, "leak: goroutines") {
		t.Fatalf("a goroutine left running was not reported: %q", r.failed)
	}
}

// ClientHello is one TLS handshake record naming the server.
func TestClientHello(t *testing.T) {
	hello := ClientHello(t, &tls.Config{ServerName: "sni.test"})
	if len(hello) < 5 || hello[0] != 0x16 || !strings.Contains(string(hello), "sni.test") {
		t.Fatalf("hello % x", hello[:min(len(hello), 16)])
	}
}
