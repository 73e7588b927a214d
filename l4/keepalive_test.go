//go:build linux

package l4

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Sockets accepted with accept4 (the raw accept path, which sets no option
// itself) from a listener set up by listenControl have keepalive on with
// the listener's timings, and TCP_NODELAY: the kernel copies them.
func TestAcceptedSocketsInheritOptions(t *testing.T) {
	lc := net.ListenConfig{KeepAlive: -1, Control: listenControl(42 * time.Second)}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := &listener{ln: ln.(*net.TCPListener)}
	if l.file, err = l.ln.File(); err != nil {
		t.Fatal(err)
	}
	defer l.file.Close()
	if l.raw, err = l.file.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	fd, _, err := l.acceptRaw()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 42},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
		{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
	} {
		got, err := unix.GetsockoptInt(fd, o.level, o.opt)
		if err != nil || got != o.want {
			t.Errorf("accepted socket %s = %d (%v), want %d", o.name, got, err, o.want)
		}
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("accepted socket flags %#x (%v): want O_NONBLOCK", fl, err)
	}
}
