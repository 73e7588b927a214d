package testpeer

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FreeAddrs returns n distinct loopback addresses ("127.0.0.1:port") that
// were free to listen on a moment ago: each was listened on and closed.
// The ports come from below the kernel's ephemeral range
// (ip_local_port_range), from which connections take their source ports
// and listeners on port 0 theirs: a port drawn here for a process that
// binds it a moment later is then not taken meanwhile by the connections
// of tests running in parallel. The listeners are held until all are
// drawn, so one draw never returns a port twice; draws start at a random
// port, so parallel draws rarely meet.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	lo, hi := stablePorts()
	addrs := make([]string, 0, n)
	first := rand.IntN(hi - lo)
	for i := 0; len(addrs) < n && i < hi-lo; i++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", lo+(first+i)%(hi-lo)))
		if err != nil {
			continue // in use
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	if len(addrs) < n {
		t.Fatalf("testpeer: only %d of %d loopback ports in %d-%d are free", len(addrs), n, lo, hi-1)
	}
	return addrs
}

// stablePorts is the range FreeAddrs draws from, [lo, hi): from 10000 up
// to the start of the ephemeral range.
func stablePorts() (lo, hi int) {
	lo, hi = 10000, ephemeralStart()
	if hi <= lo+1000 {
		hi = 32768
	}
	return lo, hi
}

// ephemeralStart is the first port of the kernel's ephemeral range
// (ip_local_port_range), or 32768, Linux's default, when /proc does not
// say.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil {
			return start
		}
	}
	return 32768
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
