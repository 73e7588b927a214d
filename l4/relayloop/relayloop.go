//go:build linux

// Package relayloop relays pairs of TCP sockets in a few epoll event loops
// of its own, with splice(2) through pipes borrowed only while bytes move.
// Small messages (a read that does not fill 16 KiB) are copied through the
// loop's one buffer instead, which costs less than two splices; a read that
// fills it switches the direction to splicing until the burst ends. A flow
// whose client speaks terminated TLS (StartSession) is relayed the same
// way, its records opened and sealed in the loop with non-blocking calls.
//
// An idle relayed connection costs two socket descriptors and one small
// struct: no goroutine, no buffer, no pipe. Go's own netpoller path keeps two
// goroutines, two netFDs and a pipe pair per direction for every connection
// blocked in io.Copy, which is what this package exists to avoid.
//
// Each loop is edge-triggered. A flow moves at most a budget of splices per
// wake-up so one busy flow cannot starve the others on its loop; idle and
// connect timeouts wait on a timing wheel threaded through the flows
// (timers.go); descriptors of a finished flow are closed only after the
// batch of events that may still name them.
package relayloop

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/closereason"
)

// Result is what a finished flow reports.
type Result struct {
	// ToBackend and ToClient are the bytes moved each way.
	ToBackend, ToClient int64
	// Reason says why the flow ended: ClientClosed or BackendClosed (the
	// side that ended first), IdleTimeout, DialFailed (StartConnecting's
	// connect failed; Err says why), or what Flow.Close was given.
	Reason closereason.Reason
	// Err is the error behind an abnormal end (a reset, a failed write).
	Err error
	// BackendAcked is how many bytes the backend's TCP acknowledged, read
	// when the backend ended the flow before sending a byte (the one case
	// where it tells whether the backend ever took data); -1 otherwise.
	BackendAcked int64
}

// Relay is a set of event loops.
type Relay struct {
	loops []*loop
	next  atomic.Uint32
	once  sync.Once

	amu       sync.Mutex
	acceptors []*Acceptor // by slot; nil slots are free
}

// New starts n event loops (at least 1).
func New(n int) (*Relay, error) {
	r := &Relay{}
	n = max(n, 1)
	for range n {
		l, err := newLoop(n)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.loops = append(r.loops, l)
		go l.run()
	}
	return r, nil
}

// Close stops the loops. Flows still open are ended with reason Shutdown
// and their done functions called.
func (r *Relay) Close() {
	r.once.Do(func() {
		for _, l := range r.loops {
			l.stop()
		}
	})
}

// Done is told how a flow ended. A connection type implements it, so a flow
// embedded in it needs no closure of its own.
type Done interface {
	// FlowEnded runs once, in a goroutine of its own, after the flow's
	// sockets are closed.
	FlowEnded(Result)
}

// DoneFunc adapts a function to Done.
type DoneFunc func(Result)

// FlowEnded calls d(res).
func (d DoneFunc) FlowEnded(res Result) { d(res) }

// Start takes over two connected sockets and relays between them in f,
// which must be new (a zero Flow, usually a field of the caller's
// connection) until both directions are done; then it closes them and tells
// done (f may have been given a Home). The *net.TCPConn values are closed
// at once: the flow keeps duplicates of their descriptors, outside Go's
// netpoller. Bytes already read from either socket must have been
// forwarded before Start.
func (r *Relay) Start(f *Flow, client, backend *net.TCPConn, idle time.Duration, done Done) error {
	return takeClient(client, func(clientFD int) error {
		return r.StartFD(f, clientFD, backend, idle, done)
	})
}

// takeClient hands a duplicate of client's descriptor to startFD (StartFD
// or StartConnecting) and closes client once startFD took it; when it did
// not, the duplicate is closed and client is as it was.
func takeClient(client *net.TCPConn, startFD func(clientFD int) error) error {
	cfd, err := detach(client)
	if err != nil {
		return fmt.Errorf("relay: take over client socket: %w", err)
	}
	if err := startFD(cfd); err != nil {
		unix.Close(cfd)
		return err
	}
	client.Close()
	return nil
}

// StartFD is Start for a client socket that Go's netpoller never saw: a
// nonblocking descriptor accepted with accept4. The flow owns clientFD
// once StartFD succeeds; on an error the caller still does.
func (r *Relay) StartFD(f *Flow, clientFD int, backend *net.TCPConn, idle time.Duration, done Done) error {
	bfd, err := detach(backend)
	if err != nil {
		return fmt.Errorf("relay: take over backend socket: %w", err)
	}
	// Both sockets are connected with empty send buffers: the first bytes
	// can go out before the registration's EPOLLOUT is seen. A write that
	// finds a buffer full waits for the next edge as usual.
	f.dirs[0].writable = true
	if err := r.start(f, clientFD, bfd, idle, done); err != nil {
		unix.Close(bfd)
		return err // backend is still open: the caller can relay itself
	}
	backend.Close()
	return nil
}

// start registers a new flow with the loop pick chooses: the part StartFD
// and StartConnecting share. The client socket can take bytes at once.
func (r *Relay) start(f *Flow, clientFD, backendFD int, idle time.Duration, done Done) error {
	l := r.pick(f.loop)
	f.loop, f.fds, f.idle, f.done, f.firstEnd = l, [2]int{clientFD, backendFD}, idle, done, -1
	f.dirs[1].writable = true
	f.lastActive.Store(time.Now().UnixNano())
	if err := l.add(f); err != nil {
		f.loop = nil
		return err
	}
	return nil
}

// pick chooses a new flow's loop: its home (the loop that accepted it)
// while that loop holds at most 2 + 1/4 more flows than the least loaded
// one, else the least loaded one; with no home, the next loop in turn. A
// connection wakes the first loop waiting on its listener (EPOLLEXCLUSIVE
// walks the wait queue in order), so without the bound a burst of
// connects would all stay in one loop; with a tighter bound short
// connections would often leave their home (measured: 5% more CPU per
// connection with a bound of one).
func (r *Relay) pick(home *loop) *loop {
	if home == nil {
		return r.loops[int(r.next.Add(1))%len(r.loops)]
	}
	h := home.open.Load()
	least, n := home, h
	for _, l := range r.loops {
		if m := l.open.Load(); m < n {
			least, n = l, m
		}
	}
	if h <= n+2+n/4 {
		return home
	}
	return least
}

// detach duplicates a socket's descriptor (close-on-exec) so the
// *net.TCPConn can be closed.
func detach(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	// No SetNonblock: the duplicate shares the open file description, and
	// with it the O_NONBLOCK that Go's netpoller set.
	return fd, nil
}

// Flow is one relayed connection pair. Its zero value is ready for Start;
// it is meant to be embedded in the caller's per-connection struct, which
// keeps an idle relayed connection to one small allocation.
type Flow struct {
	loop       *loop
	id         uint32
	pending    bool // queued for more work after its budget ran out
	finished   bool
	connecting bool   // the backend's connect is in progress (StartConnecting)
	firstEnd   int8   // side whose direction ended first: 0 client, 1 backend
	fds        [2]int // client, backend
	dirs       [2]direction
	idle       time.Duration
	done       Done
	sess       *session // terminated TLS (StartSession); nil for a plain pair

	lastActive atomic.Int64 // unix nanos of the last byte moved
	bytes      [2]atomic.Int64
	firstErr   error
	forced     atomic.Pointer[closereason.Reason]
	timer      timerLink // its deadline on the loop's timing wheel (timers.go)
}

// direction d moves bytes from fds[d] to fds[1-d] through a borrowed pipe.
type direction struct {
	pipe     *pipe
	inPipe   int
	splicing bool // in a burst: read with splice, not copyIn
	readable bool // the source may have bytes (or EOF)
	finSeen  bool // an event reported the source's FIN (or an error): read to the end
	writable bool // the destination may take bytes
	eof      bool // the source sent FIN
	shut     bool // the destination's write half is shut
}

// Bytes returns the bytes moved so far to the backend and to the client.
func (f *Flow) Bytes() (toBackend, toClient int64) {
	return f.bytes[0].Load(), f.bytes[1].Load()
}

// Close ends the flow from any goroutine; done reports reason. Call it
// only after Start took the flow.
func (f *Flow) Close(reason closereason.Reason) {
	if f.forced.CompareAndSwap(nil, &reason) {
		f.loop.requestClose(f)
	}
}
