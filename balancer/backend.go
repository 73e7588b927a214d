// Package balancer keeps pools of backends, picks one per connection by a
// policy, and dials it with retries. It owns each backend's health state
// machine: active checks (package health) and passive observations (dial
// failures, early resets) both report here, and pick reads the result with
// atomic loads only.
package balancer

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// State is a backend's place in the rotation.
type State int

// Backend states. A draining backend takes no new connections whatever its
// health; its open connections finish.
const (
	Healthy State = iota
	Unhealthy
	Draining
)

// String returns the name used in /status and logs.
func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	case Draining:
		return "draining"
	}
	return "unknown"
}

// ChangeFunc is told about every state change of a backend once, with the
// error that caused it (nil when a backend comes back).
type ChangeFunc func(b *Backend, old, new State, cause error)

// Backend is one pool member with live counters and health state. It is safe
// for concurrent use.
type Backend struct {
	// Address is the backend's host:port.
	Address string
	// Weight is the relative share for weighted policies (>= 1).
	Weight int

	pool   *poolState
	sa     unix.Sockaddr // Address as a socket address; nil for a host name
	up     atomic.Bool   // passes health; read on every pick
	drain  atomic.Bool   // set by the operator
	retry  atomic.Int64  // unix nanos after which a passively failed backend is retried (no active check)
	active atomic.Int64
	total  atomic.Uint64
	fails  atomic.Uint64 // all failures ever seen, active and passive
	// activeDown is set while the active check holds the backend down (fall
	// failures, or the first check), so panic leaves it out.
	activeDown atomic.Bool
	lastFail   atomic.Int64 // unix nanos of the last passive failure; orders panic attempts
	// passiveRun counts consecutive passive failures; written under mu, read
	// without it by ReportSuccess's fast path.
	passiveRun atomic.Int32

	mu          sync.Mutex // guards the fields below and serializes transitions
	passes      int        // consecutive active passes
	failStreak  int        // consecutive active failures
	lastCheck   time.Time
	lastErr     error
	hasActive   bool
	rise, fall  int
	passiveFall int
	cooldown    time.Duration
}

// poolState is what a backend needs from its pool: the change hook.
type poolState struct {
	onChange ChangeFunc
}

// Snapshot is a consistent copy of a backend's observable state.
type Snapshot struct {
	Address   string
	Weight    int
	State     State
	Active    int64
	Total     uint64
	Failures  uint64
	LastCheck time.Time
	LastError string
}

// State returns the backend's current state.
func (b *Backend) State() State {
	if b.drain.Load() {
		return Draining
	}
	if b.up.Load() {
		return Healthy
	}
	return Unhealthy
}

// Active returns the number of open connections to the backend.
func (b *Backend) Active() int64 { return b.active.Load() }

// Snapshot returns a copy of the backend's state for status pages.
func (b *Backend) Snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Snapshot{
		Address:   b.Address,
		Weight:    b.Weight,
		State:     b.State(),
		Active:    b.active.Load(),
		Total:     b.total.Load(),
		Failures:  b.fails.Load(),
		LastCheck: b.lastCheck,
	}
	if b.lastErr != nil {
		s.LastError = b.lastErr.Error()
	}
	return s
}

// eligible reports whether pick may choose the backend now. A backend taken
// out by passive failures without an active check comes back, half-open,
// once its cool-down has passed.
func (b *Backend) eligible(now int64) bool {
	if b.drain.Load() {
		return false
	}
	if b.up.Load() {
		return true
	}
	r := b.retry.Load()
	if r == 0 || now < r {
		return false
	}
	if b.retry.CompareAndSwap(r, 0) {
		b.mu.Lock()
		b.passiveRun.Store(0)
		b.setUpLocked(true, nil)
		b.mu.Unlock()
	}
	return b.up.Load()
}

// acquire counts a new connection to the backend.
func (b *Backend) acquire() {
	b.active.Add(1)
	b.total.Add(1)
}

// Release ends a connection that Dial handed out.
func (b *Backend) Release() { b.active.Add(-1) }

// SetDraining takes the backend out of rotation (true) or puts it back.
func (b *Backend) SetDraining(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.State()
	if b.drain.Swap(on) == on {
		return
	}
	b.notifyLocked(old, nil)
}

// ReportCheck records the result of one active health check: fall failures
// in a row make the backend unhealthy, rise passes in a row healthy.
func (b *Backend) ReportCheck(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	first := b.lastCheck.IsZero()
	b.lastCheck = time.Now()
	b.lastErr = err
	if err != nil {
		b.fails.Add(1)
		b.passes = 0
		b.failStreak++
		// The first check decides at once: a fresh process must not send
		// traffic to a dead backend for fall intervals.
		if first || b.failStreak >= b.fall {
			b.activeDown.Store(true)
			if b.up.Load() {
				b.setUpLocked(false, err)
			}
		}
		return
	}
	b.failStreak = 0
	b.passes++
	if b.passes >= b.rise {
		b.activeDown.Store(false)
		if !b.up.Load() {
			b.passiveRun.Store(0)
			b.setUpLocked(true, nil)
		}
	}
}

// ReportFailure records a passive failure (a refused or timed-out connect,
// or a connection the backend ended before taking a byte). passive_fall of
// them in a row take the backend out; without an active check it is
// retried after passive_cooldown.
func (b *Backend) ReportFailure(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails.Add(1)
	b.lastErr = err
	b.lastFail.Store(time.Now().UnixNano())
	if int(b.passiveRun.Add(1)) < b.passiveFall || !b.up.Load() {
		return
	}
	if b.hasActive {
		// The active check brings it back after rise passes.
		b.passes = 0
	} else {
		b.retry.Store(time.Now().Add(b.cooldown).UnixNano())
	}
	b.setUpLocked(false, err)
}

// ReportSuccess records a connection that worked, ending a passive failure
// run. Without an active check, it also brings back a backend that passive
// failures took out (a panic attempt that worked proves it serves).
func (b *Backend) ReportSuccess() {
	if b.passiveRun.Load() == 0 && b.up.Load() {
		return // the common case: no run to end, nothing to bring back; no lock
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.passiveRun.Store(0)
	if !b.hasActive && !b.up.Load() {
		b.retry.Store(0)
		b.setUpLocked(true, nil)
	}
}

// setUpLocked changes health and tells the pool. b.mu must be held.
func (b *Backend) setUpLocked(up bool, cause error) {
	old := b.State()
	if b.up.Swap(up) == up {
		return
	}
	b.notifyLocked(old, cause)
}

func (b *Backend) notifyLocked(old State, cause error) {
	if b.pool != nil && b.pool.onChange != nil {
		b.pool.onChange(b, old, b.State(), cause)
	}
}
