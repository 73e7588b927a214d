//go:build linux

package tlsrelay

import (
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// idleWatch implements idle_timeout without looking at the bytes: both
// directions copy under a deadline; when one hits it, the kernel's own
// counters (TCP_INFO bytes received on either socket) say whether anything
// arrived since the last look. So the splice stays a plain io.Copy, and a
// connection that moves bytes in only one direction is not idle.
type idleWatch struct {
	idle           time.Duration
	client, server *net.TCPConn

	mu         sync.Mutex
	seen       uint64    // bytes received on both sockets at lastActive
	lastActive time.Time // when activity was last noticed
}

func newIdleWatch(client, server *net.TCPConn, idle time.Duration) *idleWatch {
	w := &idleWatch{idle: idle, client: client, server: server}
	if idle > 0 {
		w.lastActive = time.Now()
		w.seen = w.received()
	}
	return w
}

func (w *idleWatch) enabled() bool { return w.idle > 0 }

// arm sets the deadlines of one direction: reads from src, and writes to dst
// when dst is a plain socket (a timed-out write leaves a *tls.Conn unusable).
func (w *idleWatch) arm(dst, src Leg) {
	if !w.enabled() {
		return
	}
	deadline := w.deadline()
	_ = src.Conn.SetReadDeadline(deadline)
	if dst.Conn == net.Conn(dst.TCP) {
		_ = dst.TCP.SetWriteDeadline(deadline)
	}
}

// deadline is when the connection times out unless bytes arrive first.
func (w *idleWatch) deadline() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastActive.Add(w.idle)
}

// stillActive reports, after a deadline passed, whether the connection saw
// bytes within the last idle period; if so the caller re-arms and goes on.
func (w *idleWatch) stillActive() bool {
	now := time.Now()
	cur := w.received()
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur != w.seen {
		w.seen, w.lastActive = cur, now
	}
	return now.Sub(w.lastActive) < w.idle
}

// received sums the bytes the kernel received on both sockets.
func (w *idleWatch) received() uint64 {
	return TCPBytesReceived(w.client) + TCPBytesReceived(w.server)
}

// TCPBytesReceived is what the kernel has received on a socket (TCP_INFO
// tcpi_bytes_received), 0 when the socket cannot tell (it is closed).
func TCPBytesReceived(c *net.TCPConn) uint64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var n uint64
	_ = rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = info.Bytes_received
		}
	})
	return n
}
