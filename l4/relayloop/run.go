//go:build linux

package relayloop

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/closereason"
)

// batch is what one turn of the loop handles: the events epoll returned,
// the flow each names (nil for the eventfd and for watches), the watches
// that fired, and the close requests taken with them.
type batch struct {
	events    []unix.EpollEvent
	flows     []*Flow // one per event
	ready     []*Watch
	accepts   []*Acceptor
	closeReqs []*Flow
	// turnWaiters are closed when the turn ends (see passTurn).
	turnWaiters []chan struct{}
}

// run is the loop. Each turn waits for events (poll), takes what they name
// and what other goroutines queued (collect), then handles it in order:
// timers for new flows, fired watches, the flows' events, listeners with
// connections to accept, flows whose budget ran out, close requests, due
// timers, and last the descriptors of flows that finished in the turn.
func (l *loop) run() {
	defer close(l.stopped)
	b := &batch{events: make([]unix.EpollEvent, 256), flows: make([]*Flow, 0, 256)}
	// now is read once per turn, after its work: the sweep, the next
	// timeout and wait all use it.
	now := time.Now()
	for {
		stopping := l.collect(b, l.poll(b.events, now))
		l.scheduleAdded(now)
		l.fireWatches(b.ready)
		l.dispatch(b)
		l.acceptReady(b.accepts)
		l.runPending()
		l.closeRequested(b)
		now = time.Now()
		l.sweepDue(now)
		l.closeFinished()
		l.endTurn(b)
		if stopping {
			l.shutdown()
			return
		}
	}
}

// poll waits for events: not at all while flows are pending, until the
// next timer is due while flows have a timeout, else until one comes. It
// returns how many it put in events. The loop waits on a thread (and a P)
// of its own: see wait.
func (l *loop) poll(events []unix.EpollEvent, now time.Time) int {
	timeout := -1
	if len(l.pending) > 0 {
		timeout = 0
	} else if l.hasIdleFlows() {
		timeout = l.untilDue(now)
	}
	n, err := l.wait(events, timeout, now)
	if err != nil {
		if err != unix.EINTR {
			panic(fmt.Sprintf("relay: epoll_wait: %v", err)) // EBADF/EINVAL: a bug, not a condition
		}
		return 0
	}
	return n
}

// collect takes, under mu, the flow, watch or acceptor each of the first n
// events names, the close requests, the waiters for the end of the turn,
// and the flows added with a timeout (into l.added). It reports whether
// the loop is stopping.
func (l *loop) collect(b *batch, n int) (stopping bool) {
	l.mu.Lock()
	b.flows, b.ready, b.accepts = b.flows[:0], b.ready[:0], b.accepts[:0]
	for i := 0; i < n; i++ {
		switch id := b.events[i].Fd; {
		case id == wakeID:
			b.flows = append(b.flows, nil)
			if a := l.acceptorFor(&b.events[i]); a != nil {
				b.accepts = append(b.accepts, a)
			}
		case id < wakeID:
			b.flows = append(b.flows, nil)
			if w := l.watchFor(&b.events[i]); w != nil {
				b.ready = append(b.ready, w)
			}
		default:
			b.flows = append(b.flows, l.flows[id])
		}
	}
	b.closeReqs, l.closeReqs = l.closeReqs, nil
	b.turnWaiters = append(b.turnWaiters, l.turnWaiters...)
	clear(l.turnWaiters)
	l.turnWaiters = l.turnWaiters[:0]
	l.added, l.timedAdds = l.timedAdds, l.added[:0]
	stopping = l.stopping
	l.mu.Unlock()
	return stopping
}

// scheduleAdded puts the flows added with a timeout on the timers, before
// their events are handled (finish cancels). now is the end of the last
// turn.
func (l *loop) scheduleAdded(now time.Time) {
	if len(l.added) > 0 {
		l.timers.advance(now.UnixNano())
	}
	for _, f := range l.added {
		if !f.finished && f.idle > 0 {
			l.timers.schedule(f, f.lastActive.Load()+int64(f.idle))
		}
	}
	clear(l.added) // keep no finished flow alive
}

// fireWatches tells the watches that fired.
func (l *loop) fireWatches(ready []*Watch) {
	for _, w := range ready {
		w.ready()
		l.spawned = true // ready starts its work in a goroutine
	}
}

// dispatch hands each event to the flow it names: it notes what the event
// says, completes a connect in progress, and pumps the flow. The eventfd's
// event drains the eventfd.
func (l *loop) dispatch(b *batch) {
	for i, f := range b.flows {
		ev := &b.events[i]
		if f == nil {
			if ev.Fd == wakeID && ev.Pad == 0 { // the eventfd, not a listener
				var buf [8]byte
				_, _ = unix.Read(l.wakefd, buf[:])
			}
			continue
		}
		if f.finished {
			continue
		}
		l.note(f, int(ev.Pad), ev.Events)
		if f.connecting {
			if ev.Pad == 1 && ev.Events&connectEvents != 0 {
				l.connectDone(f)
			}
			if f.connecting || f.finished {
				continue
			}
		}
		l.pump(f)
	}
}

// closeRequested ends the flows Flow.Close asked to end.
func (l *loop) closeRequested(b *batch) {
	for _, f := range b.closeReqs {
		if !f.finished {
			l.finish(f, *f.forced.Load(), nil)
		}
	}
	b.closeReqs = nil
}

// sweepDue sweeps once a timer is due.
func (l *loop) sweepDue(now time.Time) {
	if l.hasIdleFlows() && l.untilDue(now) == 0 {
		l.sweep(now)
	}
}

// note records what an event says about one side of a flow.
func (l *loop) note(f *Flow, side int, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		f.dirs[side].readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		f.dirs[side].finSeen = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		f.dirs[1-side].writable = true
	}
}

// runPending gives flows whose budget ran out another turn, once.
func (l *loop) runPending() {
	if len(l.pending) == 0 {
		return
	}
	todo := l.pending
	l.pending = nil
	for _, f := range todo {
		f.pending = false
		if !f.finished {
			l.pump(f)
		}
	}
}

func (l *loop) hasIdleFlows() bool { return l.idleN.Load() > 0 }

// untilDue is how many milliseconds the loop may wait before a timer is
// due (0: one is), rounded up; sweepEvery while none is scheduled yet.
func (l *loop) untilDue(now time.Time) int {
	at, ok := l.timers.next()
	if !ok {
		return int(sweepEvery / time.Millisecond)
	}
	d := time.Duration(at - now.UnixNano())
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// sweep ends flows idle for longer than their timeout (and fails connects
// that outlived theirs), looking only at timer entries that are due.
func (l *loop) sweep(now time.Time) {
	if !l.hasIdleFlows() {
		return
	}
	t := now.UnixNano()
	l.timers.collectDue(t)
	for f := l.timers.popDue(); f != nil; f = l.timers.popDue() {
		l.swept.Add(1)
		if f.finished || f.idle <= 0 {
			continue
		}
		if at := f.lastActive.Load() + int64(f.idle); at > t {
			l.timers.schedule(f, at) // early, or bytes moved since: not due yet
			continue
		}
		if !f.connecting {
			l.finish(f, closereason.IdleTimeout, nil)
			continue
		}
		l.connectFailed(f, errConnectTimeout) // idle holds the connect timeout
		if !f.finished && f.idle > 0 {
			l.timers.schedule(f, f.lastActive.Load()+int64(f.idle))
		}
	}
}
