package balancer

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// Only IP literals become socket addresses; a v4-mapped address is IPv4.
func TestSocketAddress(t *testing.T) {
	v4 := func(a [4]byte, port int) unix.Sockaddr { return &unix.SockaddrInet4{Addr: a, Port: port} }
	for addr, want := range map[string]unix.Sockaddr{
		"127.0.0.1:8080":        v4([4]byte{127, 0, 0, 1}, 8080),
		"[::ffff:10.0.0.1]:443": v4([4]byte{10, 0, 0, 1}, 443),
		"[::1]:80":              &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16(), Port: 80},
		"backend.internal:8080": nil,
		"[fe80::1%eth0]:80":     nil,
		"127.0.0.1":             nil,
		"":                      nil,
	} {
		got := socketAddress(addr)
		switch w := want.(type) {
		case nil:
			if got != nil {
				t.Errorf("%q: %#v, want nil", addr, got)
			}
		case *unix.SockaddrInet4:
			if g, ok := got.(*unix.SockaddrInet4); !ok || g.Addr != w.Addr || g.Port != w.Port {
				t.Errorf("%q: %#v, want %#v", addr, got, w)
			}
		case *unix.SockaddrInet6:
			if g, ok := got.(*unix.SockaddrInet6); !ok || g.Addr != w.Addr || g.Port != w.Port {
				t.Errorf("%q: %#v, want %#v", addr, got, w)
			}
		}
	}
	if mustPool(t, poolOf(config.PolicyRoundRobin, "127.0.0.1:1", "backend.internal:80"), Options{}).CanStartConnect() {
		t.Error("a pool with a host name claims StartConnect")
	}
	if !mustPool(t, poolOf(config.PolicyRoundRobin, "127.0.0.1:1", "[::1]:2"), Options{}).CanStartConnect() {
		t.Error("a pool of IP literals refuses StartConnect")
	}
}

// waitConnected polls a nonblocking connect to its end: nil or its error.
func waitConnected(t *testing.T, fd int) error {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := unix.Poll(pfd, 3000); err != nil || n != 1 {
		t.Fatalf("poll: %d, %v", n, err)
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		t.Fatal(err)
	}
	if v != 0 {
		return os.NewSyscallError("connect", unix.Errno(v)) // as the event loop reports it
	}
	return nil
}

// FirstAttempt, StartConnect and a resumed Attempts walk a pool as Dial does: a refused
// first attempt is a passive failure with a DialError naming it, the next
// pick skips it and connects with the options Dial sets; the last of
// connect_attempts is not retried; a local cause ends the walk at once and
// never counts against the backend.
func TestStartConnectAttempts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dead := testpeer.Refusing(t, 1)[0]
	p := mustPool(t, poolOf(config.PolicyRoundRobin, dead, ln.Addr().String()), Options{})
	first := p.FirstAttempt(netip.Addr{})
	if first.Address != dead || first.Active() != 1 {
		t.Fatalf("first pick %s with %d active", first.Address, first.Active())
	}
	fd, err := StartConnect(first)
	if err == nil {
		err = waitConnected(t, fd)
		unix.Close(fd)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to a closed port: %v", err)
	}
	a := p.Resume(netip.Addr{}, first)
	if a.Current() != first {
		t.Fatalf("resumed walk is at %v, want the first attempt", a.Current())
	}
	if retry := a.Failed(err); !retry || a.Err().Error() != "dial "+dead+": connect: connection refused (pool p, attempt 1/3)" {
		t.Fatalf("Failed: %q, retry %v", a.Err(), retry)
	}
	if s := first.Snapshot(); s.Active != 0 || s.Failures != 1 {
		t.Fatalf("refusing backend: %+v", s)
	}
	second := a.Next()
	if second == nil || second.Address != ln.Addr().String() {
		t.Fatalf("second pick %v", second)
	}
	fd, err = StartConnect(second)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := waitConnected(t, fd); err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		level, name, want int
	}{{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1}, {unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30}} {
		if v, err := unix.GetsockoptInt(fd, o.level, o.name); err != nil || v != o.want {
			t.Errorf("socket option %d/%d = %d, %v; want %d", o.level, o.name, v, err, o.want)
		}
	}
	a.Connected()
	second.Release()
	if f1, f2 := first.Snapshot().Failures, second.Snapshot().Failures; f1 != 1 || f2 != 0 {
		t.Errorf("passive failures %d and %d, want 1 for the refusing backend and 0 for the one that connected", f1, f2)
	}

	three := mustPool(t, poolOf(config.PolicyRoundRobin, testpeer.Refusing(t, 4)...), Options{})
	w := three.Resume(netip.Addr{}, three.FirstAttempt(netip.Addr{}))
	for n := 1; ; n++ {
		if retry := w.Failed(errors.New("x")); retry != (n < 3) {
			t.Errorf("attempt %d of 3: retry %v", n, retry)
		}
		if w.Next() == nil {
			if n != 3 {
				t.Errorf("%d attempts in a pool of four with connect_attempts 3", n)
			}
			break
		}
	}
	if !strings.Contains(w.Err().Error(), "(pool p, attempt 3/3)") {
		t.Errorf("last error %v, want attempt 3/3", w.Err())
	}

	local := mustPool(t, poolOf(config.PolicyRoundRobin, ln.Addr().String(), dead), Options{})
	b := local.FirstAttempt(netip.Addr{})
	l := local.Resume(netip.Addr{}, b)
	if l.Failed(syscall.EMFILE) || l.Next() != nil {
		t.Error("retry offered after running out of descriptors")
	}
	if s := b.Snapshot(); s.Failures != 0 || s.Active != 0 {
		t.Errorf("a local error counted against the backend: %+v", s)
	}
}
