//go:build linux

package relayloop

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/closereason"
)

const (
	// defaultPipeSize is a new pipe's capacity.
	defaultPipeSize = 64 << 10
	// bigPipeSize is the capacity a loop gives its first maxBigPipes pipes:
	// a bulk flow then moves up to 1 MiB per splice pair instead of 64 KiB,
	// which halves the proxy's CPU per byte. The kernel charges a pipe's
	// capacity (not its bytes) against pipe-user-pages-soft (64 MiB per user
	// by default, unless privileged), so only a few pipes per loop are big.
	bigPipeSize = 1 << 20
	// maxBigPipes is how many big pipes (in use or free) one loop keeps.
	maxBigPipes = 16
	// copyBufSize is the loop's read buffer for small messages (see copyIn).
	copyBufSize = 16 << 10
	// defaultBudget is how many splices one flow may make per wake-up.
	defaultBudget = 16
	// maxFreePipes bounds the pipes a loop keeps for reuse.
	maxFreePipes = 64
	// sweepEvery bounds the wait of a loop whose flows with a timeout are
	// not scheduled yet (they are, in the batch after they are added).
	sweepEvery = 100 * time.Millisecond
	// wakeID marks the loop's eventfd in epoll data.
	wakeID = int32(-1)
	// flowEvents is what a flow's sockets are registered for.
	flowEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
)

// pipe is a kernel pipe that bytes are spliced through; size is its capacity.
type pipe struct{ r, w, size int }

// loop is one epoll instance and the flows registered with it. Only the
// loop's goroutine touches a flow's directions; other goroutines add flows
// and request closes under mu and wake the loop through an eventfd.
type loop struct {
	epfd, wakefd int
	budget       int // splices per flow per wake-up

	mu        sync.Mutex
	flows     []*Flow // by id; nil slots are free
	free      []uint32
	closeReqs []*Flow
	timedAdds []*Flow // flows added with a timeout, for the loop to schedule
	stopping  bool
	stopped   chan struct{}

	watches     []watchSlot // by slot
	freeWatches []int32

	// epMu lets other goroutines call epoll_ctl on epfd concurrently (read
	// lock) while shutdown closes it (write lock), without holding mu, which
	// the loop takes on every batch, across a system call.
	epMu       sync.RWMutex
	epfdClosed bool

	// Loop-goroutine state.
	buf     []byte // copyIn's buffer, shared by the loop's flows
	pipes   []*pipe
	bigN    int // big pipes open, free or in use
	pending []*Flow
	toClose []int
	timers  timers      // deadlines of flows with a timeout
	added   []*Flow     // the batch's timedAdds; swapped with it, so neither is reallocated
	spawned bool        // goroutines were started since the last wait (see wait)
	loops   int         // loops in this Relay
	rawWait atomic.Bool // wait keeps the P (see wait)
	quiet   bool        // the last wait found nothing to do: the next is plain
	// unbounded is set while the loop waits (or is about to) with no
	// timeout; add wakes it when a flow with a timeout arrives.
	unbounded atomic.Bool
	waits     atomic.Int64 // waits made (tests)
	yielded   time.Time
	checked   time.Time

	idleN   atomic.Int64 // open flows with an idle timeout
	swept   atomic.Int64 // timer entries the sweep looked at (tests)
	stashed atomic.Int64 // copied bytes parked in a pipe for a full destination (tests)
}

func newLoop(loops int) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll_create1: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("relay: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return nil, fmt.Errorf("relay: epoll_ctl eventfd: %w", err)
	}
	l := &loop{epfd: epfd, wakefd: wfd, budget: defaultBudget, stopped: make(chan struct{}), buf: make([]byte, copyBufSize), loops: loops}
	l.checkRawWait(time.Now())
	return l, nil
}

// add registers a flow's two sockets, edge-triggered. Registration reports
// whatever is already readable or writable, so nothing is missed.
func (l *loop) add(f *Flow) error {
	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		return fmt.Errorf("relay: shutting down")
	}
	// Read under mu: once a socket is registered the loop may change the
	// flow (after it takes mu for the batch that reports the socket).
	fds, timed := f.fds, f.idle > 0
	if n := len(l.free); n > 0 {
		f.id = l.free[n-1]
		l.free = l.free[:n-1]
		l.flows[f.id] = f
	} else {
		f.id = uint32(len(l.flows))
		l.flows = append(l.flows, f)
	}
	if timed {
		l.timedAdds = append(l.timedAdds, f)
	}
	l.mu.Unlock()
	// Counted before the sockets are registered, which the loop's
	// setIdle relies on. A loop that sleeps with no timeout must wake to
	// start sweeping; one that will look at idleN before it sleeps, or
	// sleeps bounded, need not (see wait): that saves an eventfd write and
	// read per connection.
	if timed && l.idleN.Add(1) == 1 && l.unbounded.Load() {
		l.requestWake()
	}
	for side, fd := range fds {
		ev := unix.EpollEvent{Events: flowEvents, Fd: int32(f.id), Pad: int32(side)}
		if err := l.epollCtl(unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			l.mu.Lock()
			l.flows[f.id] = nil
			l.free = append(l.free, f.id)
			l.mu.Unlock()
			if side == 1 {
				_ = l.epollCtl(unix.EPOLL_CTL_DEL, fds[0], nil)
			}
			if timed {
				l.idleN.Add(-1)
			}
			return fmt.Errorf("relay: epoll_ctl add: %w", err)
		}
	}
	return nil
}

func (l *loop) requestClose(f *Flow) {
	l.mu.Lock()
	l.closeReqs = append(l.closeReqs, f)
	l.mu.Unlock()
	l.requestWake()
}

func (l *loop) requestWake() {
	one := [8]byte{1}
	_, _ = unix.Write(l.wakefd, one[:])
}

func (l *loop) stop() {
	l.mu.Lock()
	l.stopping = true
	l.mu.Unlock()
	l.requestWake()
	<-l.stopped
}

// run is the loop: wait, handle the batch, close what finished, sweep.
func (l *loop) run() {
	defer close(l.stopped)
	events := make([]unix.EpollEvent, 256)
	batch := make([]*Flow, 0, 256)
	var ready []*Watch
	// now is read once per batch, after it: the sweep, the next timeout
	// and wait all use it.
	now := time.Now()
	for {
		// The loop waits on a thread (and a P) of its own: see wait.
		timeout := -1
		if len(l.pending) > 0 {
			timeout = 0
		} else if l.hasIdleFlows() {
			timeout = l.untilDue(now)
		}
		n, err := l.wait(events, timeout, now)
		if err != nil && err != unix.EINTR {
			panic(fmt.Sprintf("relay: epoll_wait: %v", err)) // EBADF/EINVAL: a bug, not a condition
		}
		l.mu.Lock()
		batch, ready = batch[:0], ready[:0]
		for i := 0; i < n; i++ {
			switch id := events[i].Fd; {
			case id == wakeID:
				batch = append(batch, nil)
			case id < wakeID:
				batch = append(batch, nil)
				if w := l.watchFor(&events[i]); w != nil {
					ready = append(ready, w)
				}
			default:
				batch = append(batch, l.flows[id])
			}
		}
		reqs := l.closeReqs
		l.closeReqs = nil
		l.added, l.timedAdds = l.timedAdds, l.added[:0]
		stopping := l.stopping
		l.mu.Unlock()

		for _, f := range l.added { // before their events: finish cancels
			if !f.finished && f.idle > 0 {
				l.timers.schedule(f, f.lastActive.Load()+int64(f.idle))
			}
		}
		clear(l.added) // keep no finished flow alive
		for _, w := range ready {
			w.ready()
			l.spawned = true // ready starts its work in a goroutine
		}
		for i, f := range batch {
			if f == nil {
				if events[i].Fd == wakeID {
					var buf [8]byte
					_, _ = unix.Read(l.wakefd, buf[:])
				}
				continue
			}
			if f.finished {
				continue
			}
			l.note(f, int(events[i].Pad), events[i].Events)
			if f.connecting {
				if events[i].Pad == 1 && events[i].Events&connectEvents != 0 {
					l.connectDone(f)
				}
				if f.connecting || f.finished {
					continue
				}
			}
			l.pump(f)
		}
		l.runPending()
		for _, f := range reqs {
			if !f.finished {
				l.finish(f, *f.forced.Load(), nil)
			}
		}
		if now = time.Now(); l.hasIdleFlows() && l.untilDue(now) == 0 {
			l.sweep(now)
		}
		l.closeFinished()
		if stopping {
			l.shutdown()
			return
		}
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
	for f := l.timers.popDue(t); f != nil; f = l.timers.popDue(t) {
		l.swept.Add(1)
		if f.finished || f.idle <= 0 {
			continue
		}
		if at := f.lastActive.Load() + int64(f.idle); at > t {
			l.timers.schedule(f, at) // bytes moved since: not due yet
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

func (l *loop) getPipe() (*pipe, error) {
	if n := len(l.pipes); n > 0 {
		p := l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("relay: pipe2: %w", err)
	}
	p := &pipe{r: fds[0], w: fds[1], size: defaultPipeSize}
	if l.bigN < maxBigPipes {
		// Best effort: refused (EPERM) near the per-user limit, and then
		// the pipe keeps its default size.
		if n, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, bigPipeSize); err == nil {
			p.size = n
			l.bigN++
		}
	}
	return p, nil
}

// putPipe keeps an empty pipe for reuse; a pipe that still holds bytes (its
// flow failed) cannot be reused and is closed.
func (l *loop) putPipe(p *pipe, empty bool) {
	if empty && len(l.pipes) < maxFreePipes {
		l.pipes = append(l.pipes, p)
		return
	}
	l.closePipe(p)
}

// closePipe closes a pipe after this batch.
func (l *loop) closePipe(p *pipe) {
	if p.size > defaultPipeSize {
		l.bigN--
	}
	l.toClose = append(l.toClose, p.r, p.w)
}

// closeFinished closes the descriptors of flows that ended in this batch.
func (l *loop) closeFinished() {
	for _, fd := range l.toClose {
		unix.Close(fd)
	}
	l.toClose = l.toClose[:0]
}

// shutdown ends every flow still open and releases the loop's descriptors.
func (l *loop) shutdown() {
	l.mu.Lock()
	open := make([]*Flow, 0)
	for _, f := range l.flows {
		if f != nil && !f.finished {
			open = append(open, f)
		}
	}
	l.mu.Unlock()
	for _, f := range open {
		f.forced.CompareAndSwap(nil, ptr(closereason.Shutdown))
		l.finish(f, closereason.Shutdown, nil)
	}
	for _, p := range l.pipes {
		l.closePipe(p)
	}
	l.pipes = nil
	l.closeFinished()
	l.epMu.Lock()
	l.epfdClosed = true
	unix.Close(l.wakefd)
	unix.Close(l.epfd)
	l.epMu.Unlock()
}

// epollCtl is epoll_ctl on the loop's epoll instance, from any goroutine;
// it fails once the loop has shut down (and closed, maybe reused, epfd).
func (l *loop) epollCtl(op, fd int, ev *unix.EpollEvent) error {
	l.epMu.RLock()
	defer l.epMu.RUnlock()
	if l.epfdClosed {
		return fmt.Errorf("shutting down")
	}
	return unix.EpollCtl(l.epfd, op, fd, ev)
}

func ptr[T any](v T) *T { return &v }
