package balancer

import (
	"net/netip"
	"time"
)

// Attempts is one connection's walk through its pool's backends: which
// backends it tried, on which attempt it is, and the retry policy. It is
// the one home of that policy: Pool.Dial drives an Attempts in a blocking
// loop, and package l4's event-loop connect drives one across the loop's
// completions (FirstAttempt, StartConnect, then Connected, or Resume and
// Failed).
//
// The policy: each attempt goes to a backend not tried yet (the pool's
// policy picks it; with no healthy backend the pool is in panic, see
// panic.go); a failed attempt is a passive failure of its backend, unless
// the cause is local (out of descriptors or memory), which ends the walk
// at once because any backend would fail the same way; at most
// connect_attempts backends are tried.
//
// An Attempts is used by one goroutine at a time.
type Attempts struct {
	pool   *Pool
	client netip.Addr
	tried  []*Backend
	last   error // the last attempt's *DialError
	over   bool  // no attempt may follow
}

// FirstAttempt picks the backend of a connection's first attempt and
// counts a connection to it, keeping no walk: a caller that needs state
// only once an attempt failed (the event loop's connect, whose first
// attempt usually works) calls Resume then, and the connection that
// connects at once costs no allocation. nil: no backend can be tried.
func (p *Pool) FirstAttempt(client netip.Addr) *Backend {
	return p.next(client, nil, time.Now().UnixNano())
}

// Resume continues the walk of a connection whose first attempt, to
// first, FirstAttempt picked; that attempt is the current one.
func (p *Pool) Resume(client netip.Addr, first *Backend) *Attempts {
	a := &Attempts{}
	a.reset(p, client)
	a.tried = append(a.tried, first)
	return a
}

// reset prepares a for a new walk.
func (a *Attempts) reset(p *Pool, client netip.Addr) {
	*a = Attempts{pool: p, client: client}
}

// Next picks the backend of the next attempt and counts a connection to
// it (the caller releases it with Backend.Release when the connection
// ends, or Failed does). It returns nil when no attempt may follow: the
// last one failed for good, connect_attempts were used, or no backend is
// left to try; Err then says why.
func (a *Attempts) Next() *Backend {
	if a.over || len(a.tried) >= a.pool.MaxAttempts() {
		return nil
	}
	b := a.pool.next(a.client, a.tried, time.Now().UnixNano())
	if b == nil {
		a.over = true
		return nil
	}
	a.tried = append(a.tried, b)
	return b
}

// Current is the backend of the attempt under way (the last Next), or nil.
func (a *Attempts) Current() *Backend {
	if len(a.tried) == 0 {
		return nil
	}
	return a.tried[len(a.tried)-1]
}

// Failed records that the current attempt failed with err: its connection
// slot is released and, unless the cause is local, its backend takes a
// passive failure. It reports whether another attempt may follow.
func (a *Attempts) Failed(err error) bool {
	b := a.Current()
	attempt := len(a.tried)
	b.Release()
	de := &DialError{Pool: a.pool.Name, Address: b.Address, Attempt: attempt, Attempts: a.pool.MaxAttempts(), Err: err}
	a.last = de
	if LocalResourceError(err) {
		a.over = true
		return false
	}
	b.ReportFailure(de)
	if attempt >= a.pool.MaxAttempts() {
		a.over = true
	}
	return !a.over
}

// Connected records that the current attempt connected.
func (a *Attempts) Connected() { a.pool.Connected() }

// Connected records that a connection's attempt connected (for a first
// attempt made without an Attempts).
func (p *Pool) Connected() { p.noteUp() }

// Err says why the walk ended without a connection: the last attempt's
// *DialError, or ErrNoBackend when no backend could be tried at all.
func (a *Attempts) Err() error {
	if a.last == nil {
		return ErrNoBackend
	}
	return a.last
}
