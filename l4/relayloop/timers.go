//go:build linux

package relayloop

import (
	"math/bits"
	"time"
)

// timers keeps the deadlines of a loop's flows that have a timeout (the
// idle timeout, or the connect timeout while connecting) on a hierarchical
// timing wheel whose lists run through the flows themselves (Flow.timer):
// scheduling, moving and cancelling a deadline are O(1) and allocate
// nothing, so a flow with a timeout costs no more memory than one
// without, and a sweep looks only at the flows in buckets that are due:
// O(expiring), not a walk over every flow.
//
// Level k has wheelSlots buckets of 8^k ticks (1 ms) each, so it reaches
// wheelSlots·8^k ticks ahead: 64 ms at level 0, 12 days at the top. A
// deadline goes to the finest level that reaches it, into the bucket that
// starts at or before it (level 0: at or after it, to the tick). A bucket
// is due once its start has passed, so a flow is looked at early, never
// late: the sweep reads its real deadline (lastActive + idle; bytes moved
// since count) and schedules it again, at a finer level, until it has
// passed. A deadline is looked at once every other level below the one it
// started at, at most wheelLevels/2+1 times, plus once per 12 days beyond
// the top level's reach.
//
// Only the loop's goroutine uses it.
type timers struct {
	// cur is the tick up to which every bucket was swept: each bucket
	// that holds flows starts after it.
	cur int64
	// heads are the buckets' lists, level by level, and last the list of
	// flows a sweep found due (dueList) and has yet to look at.
	heads [wheelLevels*wheelSlots + 1]*Flow
	// used has bit s of level k set while bucket s of level k holds flows.
	used [wheelLevels]uint64
	n    int // flows scheduled
}

// timerLink is a flow's place on its loop's wheel.
type timerLink struct {
	next, prev *Flow
	bucket     int32 // index in timers.heads + 1; 0: not scheduled
}

const (
	wheelSlots  = 64 // buckets per level; a power of two, at most 64 (used)
	wheelLevels = 9
	levelShift  = 3 // each level's buckets are 8 times the last's
	tick        = int64(time.Millisecond)
	dueList     = wheelLevels * wheelSlots
)

// scheduled reports whether f has a deadline on the wheel.
func (t *timers) scheduled(f *Flow) bool { return f.timer.bucket != 0 }

// advance lets an empty wheel's clock catch up with now, so that the next
// deadline lands at the finest level that reaches it.
func (t *timers) advance(now int64) {
	if t.n == 0 {
		t.cur = max(t.cur, now/tick)
	}
}

// schedule sets f's deadline (unix nanos), moving f if it is scheduled.
func (t *timers) schedule(f *Flow, at int64) {
	t.cancel(f)
	t.link(f, t.bucketFor((at+tick-1)/tick))
}

// bucketFor returns the bucket for a deadline in ticks: at the finest level
// that reaches it, the one that starts at or before it. A deadline already
// swept goes to the next tick's bucket; one beyond the top level's reach
// goes to its farthest bucket, to be scheduled again from there.
func (t *timers) bucketFor(at int64) int {
	at = max(at, t.cur+1)
	delta := at - t.cur
	for k := range wheelLevels {
		shift := uint(k * levelShift)
		reach := int64(wheelSlots) << shift
		if delta >= reach {
			if k < wheelLevels-1 {
				continue
			}
			at = t.cur + reach - 1
		}
		return k*wheelSlots + int((at>>shift)&(wheelSlots-1))
	}
	panic("unreachable")
}

// link puts f at the head of bucket b.
func (t *timers) link(f *Flow, b int) {
	head := t.heads[b]
	f.timer = timerLink{next: head, bucket: int32(b + 1)}
	if head != nil {
		head.timer.prev = f
	}
	t.heads[b] = f
	if b < dueList {
		t.used[b/wheelSlots] |= 1 << (b % wheelSlots)
	}
	t.n++
}

// cancel removes f if it is scheduled.
func (t *timers) cancel(f *Flow) {
	if f.timer.bucket == 0 {
		return
	}
	b := int(f.timer.bucket - 1)
	next, prev := f.timer.next, f.timer.prev
	if next != nil {
		next.timer.prev = prev
	}
	if prev != nil {
		prev.timer.next = next
	} else if t.heads[b] = next; next == nil && b < dueList {
		t.used[b/wheelSlots] &^= 1 << (b % wheelSlots)
	}
	f.timer = timerLink{}
	t.n--
}

// start returns the tick at which bucket s of level k starts: of the
// starts its slot can name, the first after cur.
func (t *timers) start(k, s int) int64 {
	shift := uint(k * levelShift)
	first := t.cur>>shift + 1
	return (first + int64((s-int(first))&(wheelSlots-1))) << shift
}

// collectDue moves the flows of every bucket that starts at or before now
// (unix nanos) to the due list and sets the wheel's clock to now; popDue
// then hands them out. Deadlines scheduled meanwhile land after now, on
// the wheel, not on the due list.
func (t *timers) collectDue(now int64) {
	nowTick := now / tick
	for k := range wheelLevels {
		for used := t.used[k]; used != 0; used &= used - 1 {
			s := bits.TrailingZeros64(used)
			if t.start(k, s) > nowTick {
				continue
			}
			b := k*wheelSlots + s
			for f := t.heads[b]; f != nil; f = t.heads[b] {
				t.cancel(f)
				t.link(f, dueList)
			}
		}
	}
	t.cur = max(t.cur, nowTick)
}

// popDue removes and returns a flow collectDue found due, or nil.
func (t *timers) popDue() *Flow {
	f := t.heads[dueList]
	if f != nil {
		t.cancel(f)
	}
	return f
}

// next returns when (unix nanos) the earliest bucket that holds flows
// starts, if any does. The due list is empty here: the sweep that fills
// it drains it.
func (t *timers) next() (at int64, ok bool) {
	for k := range wheelLevels {
		if t.used[k] == 0 {
			continue
		}
		shift := uint(k * levelShift)
		first := t.cur>>shift + 1 // the first start after cur, in buckets
		// Rotated so that bit 0 is first's slot: the bits up to the
		// lowest set one are the empty buckets that come before it.
		skip := bits.TrailingZeros64(bits.RotateLeft64(t.used[k], -int(first&(wheelSlots-1))))
		if start := ((first + int64(skip)) << shift) * tick; !ok || start < at {
			at, ok = start, true
		}
	}
	return at, ok
}
