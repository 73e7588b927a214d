package testpeer

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FreeAddrs returns n distinct loopback addresses ("127.0.0.1:port") that
// were free to listen on a moment ago: each was listened on and closed.
// The listeners are held until all are drawn, since the kernel may hand a
// just-closed port out again; separate draws can return the same port when
// nothing binds the first before the second is drawn.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testpeer: listen on 127.0.0.1:0: %v", err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// Refusing returns n distinct loopback addresses that refuse connections
// (nothing listens there: FreeAddrs), for backends that are down.
func Refusing(t testing.TB, n int) []string {
	t.Helper()
	return FreeAddrs(t, n)
}

// FreePorts returns the ports of FreeAddrs(t, n): n distinct loopback
// ports, drawn together.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i, a := range FreeAddrs(t, n) {
		ports[i] = int(netip.MustParseAddrPort(a).Port())
	}
	return ports
}

// Blackhole returns a loopback address whose SYNs go unanswered: a socket
// listening with backlog 0 that nobody accepts, its queue filled first. A
// dial to it (or a health check) takes its whole timeout. The test is
// skipped when this kernel will not fill the queue.
func Blackhole(t testing.TB) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}).String()
	// Fill the accept queue until a dial no longer completes.
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("SKIPPED LOUDLY: could not fill a backlog-0 accept queue on this kernel")
	return ""
}

// TCPPair returns both ends of a real loopback TCP connection, each closed
// when the test ends: a dialled from a (short-lived) listener, and b,
// accepted by it.
func TCPPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("testpeer: listen on 127.0.0.1:0: %v", err)
	}
	defer ln.Close()
	a, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("testpeer: dial %s: %v", ln.Addr(), err)
	}
	b, err = ln.AcceptTCP()
	if err != nil {
		a.Close()
		t.Fatalf("testpeer: accept on %s: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// DialFrom connects to addr from the loopback source address src (for
// example 127.0.0.2) within 2 s.
func DialFrom(t testing.TB, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("testpeer: dial %s from %s: %v", addr, src, err)
	}
	return c.(*net.TCPConn)
}
