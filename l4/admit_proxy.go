package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/internal/proxyproto"
	"github.com/l4edge/l4edge/l4/closereason"
)

// The admit stage's PROXY header in (proxy_protocol_in).

// readProxyHeader handles proxy_protocol_in. From a trusted peer a header is
// required within the timeout and replaces the client (and destination)
// address; a LOCAL header keeps the socket addresses. From an untrusted peer
// a header is never honoured: a connection that starts with one is closed.
// It returns the destination the header named, if any.
func (s *Server) readProxyHeader(c *conn, client *net.TCPConn) (dst netip.AddrPort, e ending) {
	lr := c.lr
	ppi := lr.cfg.ProxyProtocolIn
	if !lr.isTrusted(c.client.Addr()) {
		return dst, s.rejectForgedHeader(lr, client, c.client)
	}
	_ = client.SetReadDeadline(time.Now().Add(ppi.Timeout))
	h, err := proxyproto.Read(client)
	_ = client.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return dst, ending{closereason.ProxyHeaderTimeout, fmt.Errorf("no PROXY header from trusted peer %s within %s", c.client, ppi.Timeout)}
		}
		return dst, ending{closereason.InvalidProxyHeader, fmt.Errorf("PROXY header from trusted peer %s: %w", c.client, err)}
	}
	if h.Command == proxyproto.Proxy && h.Source.IsValid() {
		c.client = netip.AddrPortFrom(h.Source.Addr().Unmap(), h.Source.Port())
		if h.Destination.IsValid() {
			dst = h.Destination
		}
	}
	return dst, ending{}
}

// forgedHeaderWindow bounds how long a listener that does not inspect
// (server-first protocols) waits for an untrusted peer's first bytes.
const forgedHeaderWindow = 250 * time.Millisecond

// rejectForgedHeader peeks, without consuming, at what an untrusted peer
// sent first. A listener that waits for a ClientHello anyway waits up to
// inspect_timeout for the first bytes; one that serves server-first
// protocols waits only briefly, then lets a silent client through. (A
// header sent later still reaches the backend only as payload, after
// l4edge's own header when the pool sends one.)
func (s *Server) rejectForgedHeader(lr *listenerRuntime, client *net.TCPConn, peer netip.AddrPort) ending {
	wait := lr.cfg.InspectTimeout
	if !lr.inspect {
		wait = min(lr.cfg.ProxyProtocolIn.Timeout, forgedHeaderWindow)
	}
	_ = client.SetReadDeadline(time.Now().Add(wait))
	defer client.SetReadDeadline(time.Time{})
	rc, err := client.SyscallConn()
	if err != nil {
		return ending{closereason.ClientClosed, err}
	}
	var buf [16]byte
	forged := false
	// A deadline or an error here is not this step's verdict: what follows
	// (inspection, the relay) reports it.
	_ = rc.Read(func(fd uintptr) bool {
		n, _, e := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if e == unix.EAGAIN {
			return false // nothing yet: wait for bytes or the deadline
		}
		if e != nil || n == 0 {
			return true
		}
		match, more := proxyproto.HasSignaturePrefix(buf[:n])
		forged = match
		return !more
	})
	if forged {
		return ending{closereason.UntrustedProxy, fmt.Errorf("PROXY header from untrusted peer %s", peer)}
	}
	return ending{}
}
