//go:build linux

package relayloop

import (
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/closereason"
)

// pump moves what it can in both directions of a flow. A flow that used its
// whole budget with work left is queued for another turn after this batch.
func (l *loop) pump(f *Flow) {
	for d := range 2 {
		if f.finished {
			return
		}
		if l.pumpDir(f, d) && !f.pending {
			f.pending = true
			l.pending = append(l.pending, f)
		}
	}
	if !f.finished && f.dirs[0].shut && f.dirs[1].shut {
		l.finish(f, sideClosed(f.firstEnd), nil)
	}
}

// pumpDir splices direction d (fds[d] -> fds[1-d]) through a pipe until the
// source is drained, the destination is full, or the budget is spent; it
// reports whether the budget ran out with work left. On the source's EOF it
// passes a FIN on with shutdown(SHUT_WR).
func (l *loop) pumpDir(f *Flow, d int) (more bool) {
	ds := &f.dirs[d]
	src, dst := f.fds[d], f.fds[1-d]
	for spent := 0; ; spent++ {
		if spent == l.budget {
			return f.hasWork(d)
		}
		if d == 1 && f.sess.pendingOut() {
			if !l.flushOut(f) {
				return false
			}
			continue
		}
		if ds.inPipe > 0 {
			if !ds.writable {
				return false // wait for EPOLLOUT
			}
			n, err := unix.Splice(ds.pipe.r, nil, dst, nil, ds.inPipe, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if !l.wrote(f, d, err) {
				return false
			}
			if err != nil {
				continue // interrupted
			}
			ds.inPipe -= int(n)
			f.bytes[d].Add(n)
			f.lastActive.Store(time.Now().UnixNano())
			continue
		}
		if ds.pipe != nil { // drained: give the pipe back while idle
			l.putPipe(ds.pipe, true)
			ds.pipe = nil
		}
		if ds.eof {
			if d == 1 && f.sess != nil && !f.sess.notified {
				l.closeNotify(f)
				continue // flushed before the FIN
			}
			if !ds.shut {
				ds.shut = true
				if f.firstEnd < 0 {
					f.firstEnd = int8(d)
				}
				// Once the other direction has passed its FIN on, both
				// peers have sent everything: the close that follows at
				// once sends this FIN (after any bytes still queued), so
				// a shutdown would only cost a system call.
				if f.dirs[1-d].shut {
					return false
				}
				if err := unix.Shutdown(dst, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
					l.fail(f, 1-d, fmt.Errorf("shutdown %s: %w", sideName(1-d), err))
				}
			}
			return false
		}
		if !ds.readable {
			return false // wait for EPOLLIN
		}
		var ok bool
		switch {
		case f.sess != nil:
			ok = l.sessionIn(f, d)
		case ds.splicing:
			ok = l.spliceIn(f, d, src)
		default:
			ok = l.copyIn(f, d, dst)
		}
		if !ok {
			return false
		}
	}
}

// spliceIn moves what the source has into a pipe without copying it; the
// next turn splices it on. A read smaller than the copy buffer ends the
// burst: the direction goes back to copying.
func (l *loop) spliceIn(f *Flow, d, src int) bool {
	ds := &f.dirs[d]
	p, err := l.getPipe()
	if err != nil {
		l.fail(f, d, err)
		return false
	}
	ds.pipe = p
	n, err := unix.Splice(src, nil, p.w, nil, p.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	switch {
	case err == unix.EAGAIN:
		ds.readable = false // the pipe is empty, so the socket is
	case err == unix.EINTR:
	case err != nil:
		l.fail(f, d, fmt.Errorf("read from %s: %w", sideName(d), err))
		return false
	case n == 0:
		ds.eof = true
	default:
		ds.inPipe = int(n)
		f.lastActive.Store(time.Now().UnixNano())
		if n < copyBufSize {
			ds.splicing = false
		}
	}
	return true
}

// copyIn reads what the source has into the loop's buffer and writes it on
// at once: for the small messages of interactive traffic two plain calls
// cost less than two splices and a pipe. What the destination cannot take
// now waits in a pipe, which the next turns splice on. A read that fills
// the buffer starts a burst: the direction splices from then on.
func (l *loop) copyIn(f *Flow, d, dst int) bool {
	n, ok := l.readIn(f, d, l.buf)
	if n == 0 {
		return ok
	}
	if n == len(l.buf) {
		f.dirs[d].splicing = true
	}
	return l.forward(f, d, dst, l.buf[:n])
}

// readIn reads direction d's source into buf. It returns the bytes read,
// or 0 with ok when there were none (the socket is empty, or at EOF, which
// it notes), or 0 and !ok when the read failed the flow.
func (l *loop) readIn(f *Flow, d int, buf []byte) (n int, ok bool) {
	n, err := f.readSource(d, buf)
	switch {
	case err == nil:
		return n, true
	case err == errWouldBlock:
		return 0, true
	case err == io.EOF:
		f.dirs[d].eof = true
		return 0, true
	}
	l.fail(f, d, fmt.Errorf("read from %s: %w", sideName(d), err))
	return 0, false
}

// readSource reads direction d's source without blocking: an empty socket
// reads as errWouldBlock, the end as io.EOF, a failure as its errno. A
// short read emptied the socket of bytes; with edge-triggered epoll the
// next byte (or FIN) to arrive brings a new event, so the direction is no
// longer readable and the read that would say EAGAIN is skipped. A FIN
// that had already arrived brings none: then it reads on to the EOF.
func (f *Flow) readSource(d int, buf []byte) (int, error) {
	ds := &f.dirs[d]
	for {
		n, err := unix.Read(f.fds[d], buf)
		switch {
		case err == unix.EAGAIN:
			ds.readable = false
			return 0, errWouldBlock
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		f.lastActive.Store(time.Now().UnixNano())
		if n < len(buf) {
			ds.readable = ds.finSeen
		}
		return n, nil
	}
}

// wrote sorts the error of a write to direction d's destination: true when
// the write moved bytes or was interrupted (the caller goes on), false when
// the destination is full (it waits for EPOLLOUT) or the write failed the
// flow.
func (l *loop) wrote(f *Flow, d int, err error) bool {
	switch {
	case err == nil, err == unix.EINTR:
		return true
	case err == unix.EAGAIN:
		f.dirs[d].writable = false
		return false
	}
	l.fail(f, 1-d, fmt.Errorf("write to %s: %w", sideName(1-d), err))
	return false
}

// forward writes p, read from direction d's source, to dst at once; what
// dst cannot take now waits in a pipe, which the next turns splice on. p
// is at most 64 KiB, what an empty pipe holds.
func (l *loop) forward(f *Flow, d, dst int, p []byte) bool {
	ds := &f.dirs[d]
	n, w := len(p), 0
	if ds.writable {
		m, err := unix.Write(dst, p)
		if !l.wrote(f, d, err) && f.finished {
			return false
		}
		if err == nil {
			w = m
			f.bytes[d].Add(int64(m))
		}
	}
	if w == n {
		return true
	}
	pp, err := l.getPipe()
	if err != nil {
		l.fail(f, d, err)
		return false
	}
	ds.pipe = pp
	// An empty pipe holds at least 64 KiB.
	m, err := unix.Write(pp.w, p[w:])
	if err != nil || m != n-w {
		l.fail(f, d, fmt.Errorf("relay: keep %d bytes for %s in a pipe: wrote %d: %v", n-w, sideName(1-d), m, err))
		return false
	}
	ds.inPipe = m
	l.stashed.Add(1)
	return true
}

// hasWork reports whether direction d can make progress without a new
// event: bytes to write to a writable destination (sealed bytes or a
// pipe's), a readable source, or an EOF read but not yet passed on (no
// event will ever announce it again; for a session, nor the close_notify
// that comes first).
func (f *Flow) hasWork(d int) bool {
	ds := &f.dirs[d]
	if ds.inPipe > 0 || d == 1 && f.sess.pendingOut() {
		return ds.writable
	}
	if ds.eof {
		return !ds.shut
	}
	return ds.readable
}

func sideName(side int) string {
	if side == 0 {
		return "client"
	}
	return "backend"
}

// fail ends a flow because of an error on one side.
func (l *loop) fail(f *Flow, side int, err error) {
	if f.firstEnd < 0 {
		f.firstEnd = int8(side)
	}
	l.finish(f, sideClosed(f.firstEnd), err)
}

// sideClosed is the reason of a flow the given side ended first (0 the
// client, 1 the backend).
func sideClosed(side int8) closereason.Reason {
	if side == 1 {
		return closereason.BackendClosed
	}
	return closereason.ClientClosed
}

// finish ends a flow: its descriptors are deregistered now and closed after
// the batch, its id is freed, and done is called in a goroutine.
func (l *loop) finish(f *Flow, reason closereason.Reason, err error) {
	if f.finished {
		return
	}
	f.finished = true
	// No EPOLL_CTL_DEL: these are the only descriptors of their sockets,
	// so closing them (after this batch, before the next wait) deregisters
	// them; events still in this batch find the flow finished.
	l.toClose = append(l.toClose, f.fds[0], f.fds[1])
	if f.sess != nil {
		l.endSession(f)
	}
	for d := range f.dirs {
		if p := f.dirs[d].pipe; p != nil {
			l.putPipe(p, f.dirs[d].inPipe == 0)
			f.dirs[d].pipe = nil
		}
	}
	if f.idle > 0 {
		l.idleN.Add(-1)
	}
	l.timers.cancel(f)
	l.mu.Lock()
	l.flows[f.id] = nil
	l.free = append(l.free, f.id)
	l.mu.Unlock()
	l.open.Add(-1)

	res := Result{ToBackend: f.bytes[0].Load(), ToClient: f.bytes[1].Load(), Reason: reason, Err: err, BackendAcked: -1}
	if reason == closereason.BackendClosed && res.ToClient == 0 {
		res.BackendAcked = AckedBytes(f.fds[1]) // still open until after the batch
	}
	forced := f.forced.Load()
	if forced != nil {
		res.Reason = *forced
	}
	if err == nil && forced == nil && reason != closereason.IdleTimeout {
		res.Err = f.firstErr
	}
	if f.done != nil {
		go f.done.FlowEnded(res)
		l.spawned = true
	}
}
