//go:build linux

package tlsrelay

import (
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/relayloop"
)

// States of a parked direction.
const (
	dirParked  int32 = iota // waiting on its watch, no goroutine
	dirRunning              // a goroutine drains the source
	dirEnded                // done; its outcome is recorded
)

// Parked relays a connection whose bytes must pass through Go code
// (terminated TLS) with no goroutine while it is idle. Each direction
// waits on a relayloop.Watch of its source socket; when the source becomes
// readable a goroutine copies until the socket has nothing more, arms the
// watch again and ends. An idle terminated connection so costs its
// crypto/tls state and two sockets, not two goroutine stacks.
//
// Reads stay safe to wait for because the *tls.Conn reads through a
// recordConn and into record-sized buffers (see copyBuffered).
type Parked struct {
	r               *Relayer
	st              relayState
	client, backend Leg
	dirs            [2]parkedDir // client to backend, backend to client
	closed          atomic.Bool
	timer           *time.Timer // idle timeout; nil when disabled
}

// parkedDir is one direction of a Parked relay.
type parkedDir struct {
	p        *Parked
	dst, src Leg
	out      *relayOutcome
	watch    *relayloop.Watch
	state    atomic.Int32
	total    int64 // touched only by the running goroutine, then by finish
	acked    int64 // as relayOutcome.acked; set in end

	srcRaw syscall.RawConn // the source socket, to probe and arm with
	// batcher is the recordConn under a *tls.Conn destination, nil for a
	// plain one: writes to it leave one write(2) per chunk.
	batcher *recordConn
}

// init prepares one direction of p.
func (d *parkedDir) init(p *Parked, dst, src Leg, out *relayOutcome) error {
	rc, err := src.TCP.SyscallConn()
	if err != nil {
		return err
	}
	d.p, d.dst, d.src, d.out, d.srcRaw, d.acked = p, dst, src, out, rc, -1
	if tc, ok := dst.Conn.(*tls.Conn); ok {
		d.batcher, _ = tc.NetConn().(*recordConn)
	}
	return nil
}

// Park starts a parked relay in loops' event loops; done is called once
// when both directions have ended, with a Result as Relay's. It fails only
// when the event loops cannot take the sockets (the caller relays with
// Relay instead).
func (r *Relayer) Park(loops *relayloop.Relay, client, backend Leg, idle time.Duration, done func(relayloop.Result)) (*Parked, error) {
	p := &Parked{r: r, client: client, backend: backend}
	p.st.w = newIdleWatch(client.TCP, backend.TCP, idle)
	p.st.done = done
	if err := p.dirs[0].init(p, backend, client, &p.st.up); err != nil {
		return nil, err
	}
	if err := p.dirs[1].init(p, client, backend, &p.st.down); err != nil {
		return nil, err
	}
	for i := range p.dirs {
		w, err := loops.NewWatch(p.dirs[i].ready)
		if err != nil {
			p.stopWatches()
			return nil, err
		}
		p.dirs[i].watch = w
	}
	p.st.pending.Store(2)
	if idle > 0 {
		// Assigned before it can fire: checkIdle and finish read it.
		p.timer = time.AfterFunc(time.Duration(math.MaxInt64), p.checkIdle)
		p.timer.Reset(idle)
	}
	for i := range p.dirs {
		d := &p.dirs[i]
		if err := d.withFD(d.watch.Add); err != nil {
			// Nothing ran yet on this direction; the one registered
			// before it ends through Close. Close may have ended this
			// one already (the other direction failed, or the idle
			// timer fired, and closed the sockets under this Add): it
			// finishes only once.
			if d.state.CompareAndSwap(dirParked, dirEnded) {
				d.finish(err)
			}
			p.Close()
			return p, nil
		}
	}
	return p, nil
}

func (p *Parked) stopWatches() {
	for i := range p.dirs {
		if w := p.dirs[i].watch; w != nil {
			w.Stop()
		}
	}
}

// Close ends the relay from outside (shutdown, a forced close) or after an
// error, from any goroutine: both sockets are closed (a running direction
// fails out of its read or write) and a parked direction ends at once. done
// still runs once, when both directions have ended.
func (p *Parked) Close() {
	if !p.closed.CompareAndSwap(false, true) {
		return
	}
	p.client.TCP.Close()
	p.backend.TCP.Close()
	for i := range p.dirs {
		if d := &p.dirs[i]; d.state.CompareAndSwap(dirParked, dirEnded) {
			d.finish(nil)
		}
	}
}

// checkIdle runs when the idle timeout may have passed: a connection that
// received bytes on either socket since the last look gets a new period.
func (p *Parked) checkIdle() {
	if w := p.st.w; w.stillActive() {
		p.timer.Reset(max(time.Until(w.deadline()), time.Millisecond))
		return
	}
	p.st.idleOut.Store(true)
	p.Close()
}

// ready is the watch's callback, in the event loop's goroutine.
func (d *parkedDir) ready() {
	if d.state.CompareAndSwap(dirParked, dirRunning) {
		go d.drain()
	}
}

// drain copies while the source has bytes, then parks again.
func (d *parkedDir) drain() {
	if d.src.Conn == net.Conn(d.src.TCP) {
		if !d.drainPlain() {
			return
		}
	} else {
		for {
			n, err := d.p.r.copyChunk(d.dst, d.src)
			d.total += n
			if err != nil {
				d.end(err)
				return
			}
			if !d.srcReadable() {
				break
			}
		}
	}
	d.state.Store(dirParked)
	if d.p.closed.Load() {
		if d.state.CompareAndSwap(dirParked, dirEnded) {
			d.finish(nil)
		}
		return
	}
	if err := d.withFD(d.watch.Arm); err != nil && d.state.CompareAndSwap(dirParked, dirEnded) {
		d.finish(nil) // the socket was closed under us
		d.p.Close()
	}
}

// drainPlain copies from a plain socket with non-blocking reads into a
// large buffer until the socket says EAGAIN: no readiness probe per read,
// and up to four full TLS records per read when the destination is a
// *tls.Conn. It reports false when the direction ended.
func (d *parkedDir) drainPlain() bool {
	bp := d.p.r.bigBufs.Get().(*[]byte)
	defer d.p.r.bigBufs.Put(bp)
	buf := *bp
	var n int
	var rerr error
	read := func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), buf)
		return true // never wait: EAGAIN means park
	}
	for {
		if err := d.srcRaw.Read(read); err != nil {
			d.end(err)
			return false
		}
		switch {
		case rerr == unix.EAGAIN:
			return true
		case rerr == unix.EINTR:
			continue
		case rerr != nil:
			d.end(&net.OpError{Op: "read", Net: "tcp", Source: d.src.TCP.LocalAddr(), Addr: d.src.TCP.RemoteAddr(), Err: os.NewSyscallError("read", rerr)})
			return false
		case n == 0:
			d.end(io.EOF)
			return false
		}
		w, werr := d.writeBatched(buf[:n])
		d.total += int64(w)
		if werr != nil {
			d.end(werr)
			return false
		}
	}
}

// writeBatched writes p to the destination; to a *tls.Conn over a
// recordConn the records of p leave in one write(2).
func (d *parkedDir) writeBatched(p []byte) (int, error) {
	if d.batcher == nil {
		return d.dst.Conn.Write(p)
	}
	d.batcher.startBatch(&d.p.r.sealedBufs)
	n, err := d.dst.Conn.Write(p)
	if ferr := d.batcher.flush(); err == nil && ferr != nil {
		return 0, ferr
	}
	return n, err
}

// end records how a running direction stopped: at EOF the FIN (and
// close_notify) is passed on and the other direction goes on; after an
// error both sockets are closed.
func (d *parkedDir) end(err error) {
	d.state.Store(dirEnded)
	d.out.at = time.Now() // before the peer can see the FIN and react
	if d.out == &d.p.st.down && d.total == 0 {
		d.acked = ackedBy(d.src.TCP) // before either socket is closed
	}
	if errors.Is(err, io.EOF) {
		closeWrite(d.dst)
		d.finish(nil)
		return
	}
	if isClosedErr(err) {
		err = nil // closed by the other direction, the idle timer or shutdown
	}
	d.finish(err)
	d.p.Close()
}

// finish records the outcome; the second direction to finish reports both.
func (d *parkedDir) finish(err error) {
	at := d.out.at // set by end; a direction ended from outside ends now
	if at.IsZero() {
		at = time.Now()
	}
	*d.out = relayOutcome{n: d.total, err: err, at: at, acked: d.acked}
	d.watch.Stop()
	p := d.p
	if p.st.pending.Add(-1) != 0 {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.st.done(p.st.result())
}

// withFD runs f with the source socket's descriptor, which stays open
// during the call.
func (d *parkedDir) withFD(f func(fd int) error) error {
	var ferr error
	if err := d.srcRaw.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// srcReadable reports whether the source has bytes, EOF or an error to read
// right now. A socket that cannot be asked reports true, so the next read
// tells what is wrong.
func (d *parkedDir) srcReadable() bool {
	ready := true
	_ = d.srcRaw.Control(func(fd uintptr) { ready = readableFD(fd) })
	return ready
}
