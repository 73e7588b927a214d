//go:build linux

package relayloop

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Watch tells its owner, once per arming, that a socket it does not own has
// become readable (bytes, EOF or an error). It lets a connection that must
// be relayed in Go code (terminated TLS) wait with no goroutine parked:
// the owner drains the socket in a goroutine started by ready, then arms
// the watch again and lets that goroutine end.
//
// The socket stays owned by its *net.TCPConn; the watch is a second,
// one-shot, level-triggered registration of the same descriptor in the
// loop's epoll. It is dropped by the kernel when the socket is closed.
type Watch struct {
	loop  *loop
	slot  int32
	gen   int32
	ready func()
}

// watchSlot is a table entry; gen tells a live watch from an earlier one
// whose event was already fetched when it stopped.
type watchSlot struct {
	w   *Watch
	gen int32
}

// watchEvents is what an armed watch waits for.
const watchEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// NewWatch returns a watch whose ready runs in the loop's goroutine (so it
// must only start work elsewhere) each time an armed watch fires. Add
// registers the socket.
func (r *Relay) NewWatch(ready func()) (*Watch, error) {
	l := r.loops[int(r.next.Add(1))%len(r.loops)]
	w := &Watch{loop: l, ready: ready}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return nil, fmt.Errorf("relay: shutting down")
	}
	if n := len(l.freeWatches); n > 0 {
		w.slot = l.freeWatches[n-1]
		l.freeWatches = l.freeWatches[:n-1]
	} else {
		w.slot = int32(len(l.watches))
		l.watches = append(l.watches, watchSlot{})
	}
	l.watches[w.slot].gen++
	w.gen = l.watches[w.slot].gen
	l.watches[w.slot].w = w
	return w, nil
}

// Add registers fd, armed: ready runs as soon as fd is readable. fd must
// stay open during the call (call it from syscall.RawConn.Control).
func (w *Watch) Add(fd int) error { return w.ctl(unix.EPOLL_CTL_ADD, fd) }

// Arm waits for the next readability of fd after the watch fired; fd must
// be the descriptor given to Add and stay open during the call. A socket
// already readable reports at once.
func (w *Watch) Arm(fd int) error { return w.ctl(unix.EPOLL_CTL_MOD, fd) }

func (w *Watch) ctl(op, fd int) error {
	ev := w.event()
	if err := w.loop.epollCtl(op, fd, &ev); err != nil {
		return fmt.Errorf("relay: epoll_ctl watch: %w", err)
	}
	return nil
}

func (w *Watch) event() unix.EpollEvent {
	return unix.EpollEvent{Events: watchEvents, Fd: watchID(w.slot), Pad: w.gen}
}

// watchID encodes a watch slot in epoll data, below wakeID.
func watchID(slot int32) int32 { return wakeID - 1 - slot }

// watchSlotOf decodes watchID.
func watchSlotOf(id int32) int32 { return wakeID - 1 - id }

// Stop frees the watch: ready is not called again, even for an event
// already fetched. The registration itself ends when the socket is closed.
func (w *Watch) Stop() {
	l := w.loop
	l.mu.Lock()
	if s := &l.watches[w.slot]; s.w == w {
		s.w = nil
		l.freeWatches = append(l.freeWatches, w.slot)
	}
	l.mu.Unlock()
}

// watchFor returns the live watch an event names, or nil. Called under mu.
func (l *loop) watchFor(ev *unix.EpollEvent) *Watch {
	slot := watchSlotOf(ev.Fd)
	if slot < 0 || int(slot) >= len(l.watches) {
		return nil
	}
	s := l.watches[slot]
	if s.w == nil || s.gen != ev.Pad {
		return nil
	}
	return s.w
}
