//go:build linux

package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// dialMPTCP connects as an MPTCP client would:
// socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP).
func dialMPTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("MPTCP dial %s: %v", addr, err)
	}
	return c.(*net.TCPConn)
}

// Listeners are plain TCP unless listeners[].multipath is set: an MPTCP
// client falls back to TCP by default and stays MPTCP with multipath; both
// ways it is echoed 32 MiB with half-close, and the relay still splices.
func TestMultipathListeners(t *testing.T) {
	probe := func(t *testing.T, multipath bool) {
		addr := testpeer.FreeAddrs(t, 1)[0]
		yaml := plainConfig(addr, testpeer.Echo(t).Addr(), "")
		if multipath {
			yaml = strings.Replace(yaml, "    listen: "+addr+"\n", "    listen: "+addr+"\n    multipath: true\n", 1)
		}
		tracedEcho(t, yaml, addr, func() *net.TCPConn {
			c := dialMPTCP(t, addr)
			// The relay reads first: the client's first bytes settle
			// whether the connection fell back to TCP.
			_, _ = c.Write([]byte("x"))
			buf := make([]byte, 1)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("first echo: %v", err)
			}
			got, err := c.MultipathTCP()
			if err != nil {
				t.Fatalf("MultipathTCP: %v", err)
			}
			if got != multipath {
				t.Fatalf("multipath: %v listener: client connection uses MPTCP = %v", multipath, got)
			}
			return c
		})
	}
	t.Run("default plain TCP", func(t *testing.T) { probe(t, false) })
	t.Run("multipath", func(t *testing.T) { probe(t, true) })
}
