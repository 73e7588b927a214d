//go:build linux

package relayloop

import (
	"fmt"
	"runtime/metrics"
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
	// wakeID marks the loop's eventfd in epoll data (Pad 0), and the
	// listening sockets of acceptors (Pad: slot + 1).
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
	timedAdds []*Flow     // flows added with a timeout, for the loop to schedule
	acceptors []*Acceptor // by slot (the Relay's)
	// turnWaiters wait for the end of the turn (see passTurn).
	turnWaiters []chan struct{}
	stopping    bool
	stopped     chan struct{}

	watches     []watchSlot // by slot
	freeWatches []int32

	// epMu lets other goroutines call epoll_ctl on epfd concurrently (read
	// lock) while shutdown closes it (write lock), without holding mu, which
	// the loop takes on every batch, across a system call.
	epMu       sync.RWMutex
	epfdClosed bool

	// Loop-goroutine state.
	buf     []byte    // copyIn's buffer, shared by the loop's flows
	sbuf    []byte    // sessionIn's buffer, made with the first session flow
	outs    []*[]byte // free buffers for sealed bytes (see session.Write)
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
	yields    atomic.Int64 // yields made before a raw wait (tests)
	yielded   time.Time    // the last yield (see wait)
	// lookedQueued is when wait last looked whether to yield.
	lookedQueued time.Time
	checked      time.Time
	// queued reads how many goroutines wait for a P (see wait).
	queued []metrics.Sample

	open    atomic.Int64 // flows registered and not finished (see Relay.pick)
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
	l := &loop{epfd: epfd, wakefd: wfd, budget: defaultBudget, stopped: make(chan struct{}), buf: make([]byte, copyBufSize), loops: loops,
		queued: []metrics.Sample{{Name: queuedMetric}}}
	l.checkRawWait(time.Now())
	return l, nil
}

// add registers a flow's two sockets, edge-triggered. Registration reports
// whatever is already readable or writable, so nothing is missed. The
// sockets are registered under mu, so a batch that collects an event of
// the first one waits until both are registered or the flow is gone: a
// flow whose registration failed never reaches the loop, and the caller
// gets it back untouched.
func (l *loop) add(f *Flow) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return fmt.Errorf("relay: shutting down")
	}
	timed := f.idle > 0
	if n := len(l.free); n > 0 {
		f.id = l.free[n-1]
		l.free = l.free[:n-1]
		l.flows[f.id] = f
	} else {
		f.id = uint32(len(l.flows))
		l.flows = append(l.flows, f)
	}
	if err := l.register(f); err != nil {
		l.flows[f.id] = nil
		l.free = append(l.free, f.id)
		return err
	}
	// Counted under mu, before the loop can see the flow, which the
	// loop's setIdle relies on. A loop that sleeps with no timeout must
	// wake to start sweeping; one that will look at idleN before it
	// sleeps, or sleeps bounded, need not (see wait): that saves an eventfd
	// write and read per connection.
	l.open.Add(1)
	if timed {
		l.timedAdds = append(l.timedAdds, f)
		if l.idleN.Add(1) == 1 && l.unbounded.Load() {
			l.requestWake()
		}
	}
	return nil
}

// register adds both of f's sockets to the epoll set, or neither.
func (l *loop) register(f *Flow) error {
	for side, fd := range f.fds {
		ev := unix.EpollEvent{Events: flowEvents, Fd: int32(f.id), Pad: int32(side)}
		if err := l.epollCtl(unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			if side == 1 {
				_ = l.epollCtl(unix.EPOLL_CTL_DEL, f.fds[0], nil)
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
