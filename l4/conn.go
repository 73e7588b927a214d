package l4

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/relayloop"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// conn is one client connection from accept to its end (doc.go draws the
// stages). Its end runs exactly once: in the goroutine that ran the
// stages, or, once handOff gave the sockets to a relay, in the relay's
// completion callback.
//
// An idle relayed connection costs this struct and nothing else on the Go
// heap (the event loop's flow is embedded), so it holds only what the
// access log entry and /status need, compactly (320 bytes, a size class);
// the Record is built at the end.
type conn struct {
	l      *listener
	lr     *listenerRuntime
	id     uint64
	start  time.Duration  // since the server's epoch, monotonic
	client netip.AddrPort // after PROXY protocol
	// route and tls are written by the stages before connRouted is set,
	// and not after.
	route    *route
	tls      *tlsInfo // nil: no TLS seen
	preamble int32    // client bytes sent to the backend before the relay (the ClientHello, at most maxClientHello)
	flags    atomic.Uint32
	// attempts is the walk through the pool's backends while an event
	// loop connects (connect_loop.go); nil before and after.
	attempts *balancer.Attempts

	// clientConn and backendConn are the sockets while Go code owns them;
	// once the event loop owns duplicates they are nil, so an idle relayed
	// connection keeps no net.TCPConn (and its addresses) alive.
	clientConn  atomic.Pointer[net.TCPConn]
	backendConn atomic.Pointer[net.TCPConn]
	backendRef  atomic.Pointer[balancer.Backend]
	parked      atomic.Pointer[tlsrelay.Parked] // terminated TLS
	forced      atomic.Pointer[closereason.Reason]
	flow        relayloop.Flow
}

// Bits of conn.flags.
const (
	// connInLoop: the flow was started; the event loop owns the sockets.
	connInLoop uint32 = 1 << iota
	// connRouted: route and backendRef are final (the backend accepted
	// the connection); Connections and CloseBackend read them only after
	// they see it.
	connRouted
	// connPerIP: the connection holds a slot of the listener's per-IP
	// limit.
	connPerIP
)

// has reports whether flag f is set.
func (c *conn) has(f uint32) bool { return c.flags.Load()&f != 0 }

// set sets flag f.
func (c *conn) set(f uint32) { c.flags.Or(f) }

// tlsInfo is what a connection's ClientHello or handshake told.
type tlsInfo struct {
	mode      string // TLSPassthrough or TLSTerminate
	sni, alpn string
}

// handOff is the one place the sockets pass from the stages to a relay:
// the event loop's flow (parked nil; the flow owns duplicates, so the
// net.TCPConns are dropped) or a parked TLS relay. From here on the relay
// ends the connection and a force close goes to it; one that came while
// the relay was taking over is passed on now.
func (c *conn) handOff(parked *tlsrelay.Parked) {
	if parked != nil {
		c.parked.Store(parked)
	} else {
		c.set(connInLoop)
		c.clientConn.Store(nil)
		c.backendConn.Store(nil)
	}
	if p := c.forced.Load(); p != nil {
		c.forceClose(*p)
	}
}

// forceClose ends the connection from outside (shutdown, an unhealthy
// backend) with a close reason: through the relay that owns it, or by
// closing the sockets under the stage that runs.
func (c *conn) forceClose(reason closereason.Reason) {
	c.forced.CompareAndSwap(nil, &reason)
	if c.has(connInLoop) {
		c.flow.Close(*c.forced.Load())
		return
	}
	if p := c.parked.Load(); p != nil {
		p.Close()
		return
	}
	c.closeSockets()
}

// forcedEnding is how a stage ends a connection that was force closed
// while it ran, or the zero ending.
func (c *conn) forcedEnding() ending {
	if p := c.forced.Load(); p != nil {
		return ending{reason: *p}
	}
	return ending{}
}

// closeSockets closes the sockets Go code still owns.
func (c *conn) closeSockets() {
	if cl := c.clientConn.Load(); cl != nil {
		cl.Close()
	}
	if b := c.backendConn.Load(); b != nil {
		b.Close()
	}
}

// ipKey is the connection's key in the listener's per-IP limit.
func (c *conn) ipKey() netip.Prefix {
	return clientKey(c.client.Addr(), c.lr.cfg.IPv6PrefixLength)
}

// age is how long ago the connection was accepted.
func (c *conn) age() time.Duration { return time.Since(c.l.srv.epoch) - c.start }
