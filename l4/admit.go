package l4

import (
	"net"
	"net/netip"
	"sync"

	"github.com/l4edge/l4edge/l4/closereason"
)

// admit is the admit stage, the same on both paths: max_connections, then
// the PROXY header of proxy_protocol_in (full path only: a listener that
// reads one is never raw), then max_connections_per_ip on the final client
// address. client is nil on the raw path. It returns the destination a
// PROXY header named (else the zero AddrPort: the socket's own address
// is used).
func (s *Server) admit(c *conn, client *net.TCPConn) (dst netip.AddrPort, e ending) {
	if !c.withinMaxConnections() {
		return dst, ending{reason: closereason.Limit}
	}
	if client != nil && c.lr.cfg.ProxyProtocolIn != nil {
		if dst, e = s.readProxyHeader(c, client); e.ends() {
			return dst, e
		}
	}
	if !c.takeIPSlot() {
		return dst, ending{reason: closereason.Limit}
	}
	return dst, ending{}
}

// withinMaxConnections applies the listener's max_connections (the
// connection is already counted in active).
func (c *conn) withinMaxConnections() bool {
	if m := c.lr.cfg.MaxConnections; m > 0 && c.l.active.Load() > int64(m) {
		c.l.refused.Add(1)
		return false
	}
	return true
}

// takeIPSlot applies max_connections_per_ip to the (final) client address;
// the end stage gives the slot back.
func (c *conn) takeIPSlot() bool {
	m := c.lr.cfg.MaxConnectionsPerIP
	if m <= 0 {
		return true
	}
	if !c.l.perIP.acquire(c.ipKey(), m) {
		c.l.refused.Add(1)
		return false
	}
	c.set(connPerIP)
	return true
}

// ipLimiter counts open connections per client address (IPv6 per prefix).
type ipLimiter struct {
	mu    sync.Mutex
	count map[netip.Prefix]int
}

func newIPLimiter() *ipLimiter { return &ipLimiter{count: map[netip.Prefix]int{}} }

// clientKey groups an address: IPv4 per address, IPv6 per /bits.
func clientKey(a netip.Addr, v6bits int) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, err := a.Prefix(v6bits)
	if err != nil {
		return netip.PrefixFrom(a, a.BitLen())
	}
	return p
}

// acquire counts a connection for key unless the limit is reached.
func (l *ipLimiter) acquire(key netip.Prefix, limit int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count[key] >= limit {
		return false
	}
	l.count[key]++
	return true
}

func (l *ipLimiter) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count[key] <= 1 {
		delete(l.count, key)
		return
	}
	l.count[key]--
}
