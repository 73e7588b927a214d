package l4

import (
	"fmt"
	"io"
	"time"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/relayloop"
)

// ending is how a stage ends a connection. The zero value means the
// connection goes on to the next stage; from the relay stage, that a relay
// took it over and will end it.
type ending struct {
	reason closereason.Reason
	err    error
}

// ends reports whether the stage ended the connection.
func (e ending) ends() bool { return e.reason != "" }

// result is how the relays would report the ending.
func (e ending) result() relayloop.Result {
	return relayloop.Result{Reason: e.reason, Err: e.err, BackendAcked: -1}
}

// endWith is the end stage of a connection a stage ended.
func (c *conn) endWith(e ending) { c.end(e.result()) }

// endInLoop is endWith for a connection that an event loop's accept step
// ended before a relay took it (refused by a limit, no backend): the
// release runs at once, in the loop, whose accept step must know whether
// the connection starved its listener; the report (the access log's write,
// OnDone) runs in a goroutine, so a slow log sink cannot stall the flows
// of the loop.
func (c *conn) endInLoop(e ending) {
	rec := c.release(e.result())
	go c.report(&rec)
}

// end is the end stage: it releases everything, writes the access log
// entry and reports the record. res says how the connection ended, as the
// relays report it (a forced close overrides its reason).
func (c *conn) end(res relayloop.Result) {
	rec := c.release(res)
	c.report(&rec)
}

// release gives back what the connection holds (its per-IP slot, its
// backend slot, its sockets, its place among the tracked connections) and
// returns its Record. It never blocks for long: it may run in an event
// loop.
func (c *conn) release(res relayloop.Result) Record {
	srv := c.l.srv
	if c.has(connPerIP) {
		c.l.perIP.release(c.ipKey())
	}
	if b := c.backendRef.Load(); b != nil {
		b.Release() // the slot the connect stage's Attempts acquired
	}
	c.closeSockets()
	if res.Reason == closereason.DialFailed && balancer.LocalResourceError(res.Err) {
		cause := res.Err          // a copy, so that only this path allocates
		c.l.starved.Store(&cause) // the accept loop backs off
	}
	srv.untrack(c)
	c.l.active.Add(-1)
	return c.record(res)
}

// record builds the connection's Record.
func (c *conn) record(res relayloop.Result) Record {
	r := Record{
		ID: c.id, Listener: c.lr.cfg.Name, Client: c.client, TLS: TLSNone,
		Start:          c.l.srv.epoch.Add(c.start),
		BytesToBackend: int64(c.preamble) + res.ToBackend, BytesToClient: res.ToClient,
		Close: res.Reason, Err: res.Err,
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

// report writes the connection's access log entry (when its runtime has
// the access log on) and hands its record to OnDone; the connection's
// handler is done after it. Either may block (a slow log sink).
func (c *conn) report(rec *Record) {
	s := c.l.srv
	if c.lr.rt.Config.Log.AccessEnabled() && s.opts.AccessLog != nil {
		s.opts.AccessLog.Info("connection", rec.fields()...)
	}
	if s.opts.OnDone != nil {
		s.opts.OnDone(rec)
	}
	s.handlers.Done()
}

// FlowEnded is told by a relay (the event loop's flow, or the TLS relay)
// how the connection ended: it applies the passive health rule to the
// backend, then ends the connection.
func (c *conn) FlowEnded(res relayloop.Result) {
	if res.Reason == closereason.DialFailed { // the in-loop connect found no backend
		res.Reason = dialFailure(res.Err).reason
	}
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
func (c *conn) judgeBackend(b *balancer.Backend, res *relayloop.Result) {
	delivered := res.ToClient > 0 || res.BackendAcked > 0
	switch {
	case res.Reason != closereason.BackendClosed:
		if delivered || res.ToBackend > 0 {
			b.ReportSuccess()
		}
	case delivered:
		if res.Err != nil {
			res.Reason = closereason.BackendReset
		}
		b.ReportSuccess()
	case res.BackendAcked == 0 && (int64(c.preamble)+res.ToBackend > 0 || c.age() < c.route.pool.ConnectWindow()):
		b.ReportFailure(fmt.Errorf("backend %s %s before taking a byte: %w", b.Address, endedHow(res.Err), errOrEOF(res.Err)))
	}
}

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
