//go:build linux

package l4

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// Conversions between descriptors, Go's sockets and addresses, for the
// stages.

// fdConn turns an accepted descriptor into a *net.TCPConn (registered with
// Go's netpoller). fd is closed either way: the conn holds a duplicate.
func fdConn(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "client")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrap accepted socket: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("wrap accepted socket: not TCP")
	}
	return tc, nil
}

// sockaddrAddrPort converts accept4's peer address.
func sockaddrAddrPort(sa syscall.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// localAddrPort is the address a client connected to (for the PROXY
// header), or the zero AddrPort when the socket cannot say.
func localAddrPort(fd int) netip.AddrPort {
	sa, err := syscall.Getsockname(fd) // not unix's: see relayloop.Accept4
	if err != nil {
		return netip.AddrPort{}
	}
	return sockaddrAddrPort(sa)
}

// addrPort is a socket address without IPv4 mapping.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
