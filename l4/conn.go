package l4

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/relayloop"
)

// conn is one client connection from accept to its access-log entry. Its
// end runs exactly once: in the accepting goroutine, or in the event loop's
// completion callback once the relay has taken the sockets over.
type conn struct {
	srv *Server
	l   *listener
	lr  *listenerRuntime
	rec Record

	// client and backend are the sockets while Go code owns them; once the
	// event loop owns duplicates they are nil, so an idle relayed
	// connection keeps no net.TCPConn (and its addresses) alive.
	client     atomic.Pointer[net.TCPConn]
	backend    atomic.Pointer[net.TCPConn]
	backendRef atomic.Pointer[balancer.Backend]
	flow       atomic.Pointer[relayloop.Flow] // plain TCP in the event loop
	parked     atomic.Pointer[parkedRelay]    // terminated TLS
	forced     atomic.Pointer[string]
	// routed is set once rec's ID, Listener, Route, Pool, Backend and
	// Start are final; Connections reads only those fields, and only after
	// it sees routed.
	routed   atomic.Bool
	cleanups []func() // run in reverse order by end
}

// onEnd registers a cleanup for the end of the connection.
func (c *conn) onEnd(f func()) { c.cleanups = append(c.cleanups, f) }

// forceClose ends the connection from outside (shutdown, an unhealthy
// backend) with a close reason.
func (c *conn) forceClose(reason string) {
	c.forced.CompareAndSwap(nil, &reason)
	if f := c.flow.Load(); f != nil {
		f.Close(reason)
		return
	}
	if p := c.parked.Load(); p != nil {
		p.close()
		return
	}
	c.closeSockets()
}

// closeSockets closes the sockets Go code still owns.
func (c *conn) closeSockets() {
	if cl := c.client.Load(); cl != nil {
		cl.Close()
	}
	if b := c.backend.Load(); b != nil {
		b.Close()
	}
}

// end releases everything and writes the access log entry.
func (c *conn) end() {
	for i := len(c.cleanups) - 1; i >= 0; i-- {
		c.cleanups[i]()
	}
	if b := c.backendRef.Load(); b != nil {
		b.Release() // the slot Pool.Dial acquired
	}
	c.closeSockets()
	c.srv.untrack(c)
	c.l.active.Add(-1)
	if p := c.forced.Load(); p != nil {
		c.rec.Close = *p
	}
	c.rec.Duration = time.Since(c.rec.Start)
	c.srv.finish(&c.rec, c.lr.rt.Config.Log.AccessEnabled())
	c.srv.handlers.Done()
}

// relayDone records how the relay ended and reports a backend that reset
// before sending anything as a passive failure.
func (c *conn) relayDone(res relayResult) {
	c.rec.BytesToBackend += res.toBackend
	c.rec.BytesToClient = res.toClient
	c.rec.Close, c.rec.Err = res.reason, res.err
	b := c.backendRef.Load()
	switch {
	case b == nil:
	case res.toClient > 0:
		b.ReportSuccess()
	case res.reason == CloseBackendClosed && res.err != nil:
		b.ReportFailure(fmt.Errorf("backend %s reset before replying: %w", b.Address, res.err))
	}
}

// relayInLoop hands a plain TCP pair to the event loop. It reports false
// when the loop could not take it (the caller relays in this goroutine).
func (s *Server) relayInLoop(c *conn, backend *net.TCPConn, idle time.Duration) bool {
	f, err := s.loops.Start(c.client.Load(), backend, idle, func(res relayloop.Result) {
		c.relayDone(fromLoop(res))
		c.end()
	})
	if err != nil {
		s.log.Debug("event loop refused a connection; relaying in its goroutine", zap.Error(err))
		return false
	}
	c.flow.Store(f)
	c.client.Store(nil) // closed by Start; the flow owns duplicates
	c.backend.Store(nil)
	if p := c.forced.Load(); p != nil { // a force close raced with the hand-off
		f.Close(*p)
	}
	return true
}

func fromLoop(r relayloop.Result) relayResult {
	res := relayResult{toBackend: r.ToBackend, toClient: r.ToClient, err: r.Err}
	switch r.Reason {
	case relayloop.ClientClosed:
		res.reason = CloseClientClosed
	case relayloop.BackendClosed:
		res.reason = CloseBackendClosed
	case relayloop.IdleTimeout:
		res.reason = CloseIdleTimeout
	case relayloop.Forced:
		res.reason = r.Forced
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
