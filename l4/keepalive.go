//go:build linux

package l4

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Keepalive probes after idle: every keepAliveInterval, keepAliveCount
// times, as Go's own defaults.
const (
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// listenControl returns a ListenConfig.Control that turns TCP keepalive
// on for the listening socket with the given idle time, and TCP_NODELAY.
// Linux copies these options to every socket accept returns, so no
// per-connection call is needed.
func listenControl(idle time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(_, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			for _, o := range []struct {
				level, opt, val int
			}{
				{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
				{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(max(idle/time.Second, 1))},
				{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
				{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
				{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
			} {
				if e := unix.SetsockoptInt(s, o.level, o.opt, o.val); e != nil {
					serr = fmt.Errorf("socket options on %s: %w", address, e)
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
