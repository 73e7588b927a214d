package l4

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/relayloop"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// conn is one client connection from accept to its access-log entry. Its
// end runs exactly once: in the accepting goroutine, or in the relay's
// completion callback once the relay has taken the sockets over.
//
// An idle relayed connection costs this struct and nothing else on the Go
// heap (the event loop's flow is embedded), so it holds only what the
// access log entry and /status need, compactly; the Record is built at the
// end.
type conn struct {
	l      *listener
	lr     *listenerRuntime
	id     uint64
	start  time.Duration  // since the server's epoch, monotonic
	client netip.AddrPort // after PROXY protocol
	// route and tls are written by the accepting goroutine before routed
	// is set, and not after.
	route    *route
	tls      *tlsInfo // nil: no TLS seen
	preamble int32    // client bytes sent to the backend before the relay (the ClientHello, at most maxClientHello)
	perIP    bool     // holds a slot of the listener's per-IP limit
	redialed bool     // the server's tried map has an entry (connectInLoop)

	// clientConn and backendConn are the sockets while Go code owns them;
	// once the event loop owns duplicates they are nil, so an idle relayed
	// connection keeps no net.TCPConn (and its addresses) alive.
	clientConn  atomic.Pointer[net.TCPConn]
	backendConn atomic.Pointer[net.TCPConn]
	backendRef  atomic.Pointer[balancer.Backend]
	parked      atomic.Pointer[tlsrelay.Parked] // terminated TLS
	forced      atomic.Pointer[closereason.Reason]
	inLoop      atomic.Bool // flow was started: plain TCP in the event loop
	// routed is set once route and backendRef are final (the backend
	// accepted the connection); Connections and CloseBackend read them
	// only after they see routed.
	routed atomic.Bool
	flow   relayloop.Flow
}

// tlsInfo is what a connection's ClientHello or handshake told.
type tlsInfo struct {
	mode      string // TLSPassthrough or TLSTerminate
	sni, alpn string
}

// forceClose ends the connection from outside (shutdown, an unhealthy
// backend) with a close reason.
func (c *conn) forceClose(reason closereason.Reason) {
	c.forced.CompareAndSwap(nil, &reason)
	if c.inLoop.Load() {
		c.flow.Close(reason)
		return
	}
	if p := c.parked.Load(); p != nil {
		p.Close()
		return
	}
	c.closeSockets()
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

// end releases everything and writes the access log entry; res says how
// the connection ended (a forced close overrides its reason).
func (c *conn) end(res relayResult) {
	srv := c.l.srv
	if c.perIP {
		c.l.perIP.release(c.ipKey())
	}
	if b := c.backendRef.Load(); b != nil {
		b.Release() // the slot Pool.Dial acquired
	}
	c.closeSockets()
	if res.reason == closereason.DialFailed && balancer.LocalResourceError(res.err) {
		cause := res.err          // a copy, so that only this path allocates
		c.l.starved.Store(&cause) // the accept loop backs off
	}
	if c.redialed {
		srv.forgetTried(c)
	}
	srv.untrack(c)
	c.l.active.Add(-1)
	rec := c.record(res)
	srv.finish(&rec, c.lr.rt.Config.Log.AccessEnabled())
	srv.handlers.Done()
}

// record builds the connection's Record.
func (c *conn) record(res relayResult) Record {
	r := Record{
		ID: c.id, Listener: c.lr.cfg.Name, Client: c.client, TLS: TLSNone,
		Start:          c.l.srv.epoch.Add(c.start),
		BytesToBackend: int64(c.preamble) + res.toBackend, BytesToClient: res.toClient,
		Close: res.reason, Err: res.err,
	}
	if c.route != nil {
		r.Route, r.Pool = c.route.name, c.route.pool.Name
	}
	if b := c.backendRef.Load(); b != nil {
		r.Backend = b.Address
	}
	if t := c.tls; t != nil {
		r.TLS, r.SNI, r.ALPN = t.mode, t.sni, t.alpn
	}
	if p := c.forced.Load(); p != nil {
		r.Close = *p
	}
	r.Duration = time.Since(r.Start)
	return r
}

// relayEnded applies the passive health rule to the backend, then ends
// the connection.
func (c *conn) relayEnded(res relayResult) {
	if b := c.backendRef.Load(); b != nil {
		c.judgeBackend(b, &res)
	}
	c.end(res)
}

// judgeBackend is passive health's rule for a connection that reached its
// backend. Only what proves the backend broken counts against it: it ended
// the connection (reset or close) before acknowledging a byte written to
// it, or, with nothing to write, within connect_timeout of the accept.
// What a backend does after it took or sent bytes is the application's
// business: a reset then ends the connection with backend_reset and is
// never a health failure. A connection that moved bytes ends a run of
// passive failures.
func (c *conn) judgeBackend(b *balancer.Backend, res *relayResult) {
	delivered := res.toClient > 0 || res.backendAcked > 0
	switch {
	case res.reason != closereason.BackendClosed:
		if delivered || res.toBackend > 0 {
			b.ReportSuccess()
		}
	case delivered:
		if res.err != nil {
			res.reason = closereason.BackendReset
		}
		b.ReportSuccess()
	case res.backendAcked == 0 && (int64(c.preamble)+res.toBackend > 0 || c.age() < c.route.pool.ConnectWindow()):
		b.ReportFailure(fmt.Errorf("backend %s %s before taking a byte: %w", b.Address, endedHow(res.err), errOrEOF(res.err)))
	}
}

// age is how long ago the connection was accepted.
func (c *conn) age() time.Duration { return time.Since(c.l.srv.epoch) - c.start }

// endedHow names how a backend ended a connection: reset, or closed.
func endedHow(err error) string {
	if err != nil {
		return "reset"
	}
	return "closed"
}

func errOrEOF(err error) error {
	if err != nil {
		return err
	}
	return io.EOF
}

// FlowEnded is told by the event loop how the connection's flow ended, or
// by tlsrelay how its relay did.
func (c *conn) FlowEnded(r relayloop.Result) { c.relayEnded(fromLoop(r)) }

// relayInLoop hands a plain TCP pair to the event loop. It reports false
// when the loop could not take it (the caller relays in this goroutine).
func (s *Server) relayInLoop(c *conn, backend *net.TCPConn, idle time.Duration) bool {
	if err := s.loops.Start(&c.flow, c.clientConn.Load(), backend, idle, c); err != nil {
		s.log.Debug("event loop refused a connection; relaying in its goroutine", zap.Error(err))
		return false
	}
	c.inLoop.Store(true)
	c.clientConn.Store(nil) // closed by Start; the flow owns duplicates
	c.backendConn.Store(nil)
	if p := c.forced.Load(); p != nil { // a force close raced with the hand-off
		c.flow.Close(*p)
	}
	return true
}

func fromLoop(r relayloop.Result) relayResult {
	res := relayResult{toBackend: r.ToBackend, toClient: r.ToClient, reason: r.Reason, err: r.Err, backendAcked: r.BackendAcked}
	if r.Reason == closereason.DialFailed {
		res.reason = dialFailure(r.Err).reason
	}
	return res
}

// finish writes the access log entry (when the connection's runtime has the
// access log on) and reports the record.
func (s *Server) finish(rec *Record, accessLog bool) {
	if accessLog && s.opts.AccessLog != nil {
		s.opts.AccessLog.Info("connection", rec.fields()...)
	}
	if s.opts.OnDone != nil {
		s.opts.OnDone(rec)
	}
}
