package balancer

import (
	"time"

	"go.uber.org/zap"
)

// Panic: when no backend of a pool is healthy, refusing every client turns
// a backend's bad minute into an outage that l4edge made. The pool then
// tries the backends that passive failures took out, least recently failed
// first, one attempt each within connect_attempts. Backends an active
// check holds down stay out unless every backend is down; then all are
// tried. Draining backends never are.

// panicLogEvery is how often "pool in panic" is logged while it lasts.
const panicLogEvery = 10 * time.Second

// InPanic reports whether the pool has no healthy backend but has some it
// may still try (not draining).
func (p *Pool) InPanic() bool {
	tryable := false
	for _, b := range p.backends {
		if b.drain.Load() {
			continue
		}
		if b.up.Load() {
			return false
		}
		tryable = true
	}
	return tryable
}

// panicPick chooses the next backend to try in panic, skipping tried, or
// returns nil when the pool is not in panic or nothing is left to try.
func (p *Pool) panicPick(tried []*Backend) *Backend {
	if !p.InPanic() {
		return nil
	}
	onlyPassive := false
	for _, b := range p.backends {
		if !b.drain.Load() && !b.activeDown.Load() {
			onlyPassive = true // someone failed only passively: spare the actively down
			break
		}
	}
	var best *Backend
	for _, b := range p.backends {
		if b.drain.Load() || (onlyPassive && b.activeDown.Load()) || contains(tried, b) {
			continue
		}
		if best == nil || b.lastFail.Load() < best.lastFail.Load() {
			best = b
		}
	}
	if best != nil {
		p.notePanic()
	}
	return best
}

// notePanic logs "pool in panic" at most once per panicLogEvery.
func (p *Pool) notePanic() {
	p.allDown.Store(true)
	now := time.Now().UnixNano()
	last := p.panicLogged.Load()
	if now-last < int64(panicLogEvery) || !p.panicLogged.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("pool in panic", zap.Int("backends", len(p.backends)),
		zap.String("hint", "no backend is healthy; trying passively failed backends anyway"))
}

func contains(bs []*Backend, b *Backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}
