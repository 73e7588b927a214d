//go:build linux

package relayloop

import (
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// maxWaitMillis bounds one raw wait, so a loop comes back to Go code
	// at least this often even if the runtime cannot interrupt it with a
	// signal (GODEBUG=asyncpreemptoff=1): a stop-the-world then waits at
	// most this long.
	maxWaitMillis = 10
	// yieldEvery is how often a loop that keeps its P lets whatever the
	// scheduler queued on that P run (see wait).
	yieldEvery = time.Millisecond
	// checkProcsEvery is how often a loop looks at GOMAXPROCS again.
	checkProcsEvery = time.Second
)

// wait is epoll_wait(2). While Go has a P to spare beyond the loops, it is
// made as a raw system call: the loop keeps its P while it blocks, as if
// it were running.
//
// A plain system call tells the scheduler the P is free to take: while
// both loops blocked, the sysmon thread kept taking their Ps (20 µs into
// each wait whenever no P was idle), waking another thread to look for
// work on them and putting it back to sleep, and the loop then had to get
// a P back on return. In the benchmark that churn cost 13% of the proxy's
// CPU per connection (connect, 64-byte echo, close); the raw wait made
// 7-12% more connections per second and cut CPU per TLS handshake by 5%.
// (Parking the loop in Go's netpoller instead, the epoll descriptor being
// pollable, saved CPU too but doubled the 32-connection ping-pong p99: the
// loop then queued behind other goroutines.)
//
// What the raw wait gives up is handled here:
//   - other goroutines need a P the loops do not hold: with no P to spare
//     (GOMAXPROCS at most the number of loops, checked every second) the
//     wait is a plain system call;
//   - goroutines the loop started (FlowEnded, a watch's ready) or woke sit
//     in its P's run queue, where other Ps look only when idle: the loop
//     yields before it waits when it started some, and every millisecond;
//   - the runtime stops the loop for a collection or preempts it (every
//     10 ms) with a signal, which interrupts epoll_wait with EINTR, and the
//     wait is bounded in case signals are off;
//   - a loop with nothing to do for a whole bounded wait is quiet: it waits
//     with plain system calls until an event comes.
func (l *loop) wait(events []unix.EpollEvent, timeout int, now time.Time) (int, error) {
	l.waits.Add(1)
	if now.Sub(l.checked) >= checkProcsEvery {
		l.checkRawWait(now)
	}
	if !l.rawWait.Load() || l.quiet {
		if timeout < 0 {
			// Set before idleN is read, as add reads it after idleN
			// changed: one of the two sees the other (see add).
			l.unbounded.Store(true)
			if l.hasIdleFlows() {
				timeout = int(sweepEvery / time.Millisecond)
			}
		}
		n, err := unix.EpollWait(l.epfd, events, timeout)
		l.unbounded.Store(false)
		l.quiet = n == 0 && err == nil
		return n, err
	}
	if l.spawned || now.Sub(l.yielded) >= yieldEvery {
		l.spawned, l.yielded = false, now
		runtime.Gosched()
	}
	if timeout < 0 || timeout > maxWaitMillis {
		timeout = maxWaitMillis
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(timeout), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	// A raw wait that timed out with nothing to do makes the loop quiet:
	// it waits with plain system calls, which cost an idle process
	// nothing, until events come again. (Raw waits while idle woke each
	// loop every 10 ms and cost an idle l4edge 1.5% of a core.)
	l.quiet = n == 0 && timeout > 0
	return int(n), nil
}

// checkRawWait decides whether wait may keep the loop's P.
func (l *loop) checkRawWait(now time.Time) {
	l.checked = now
	l.rawWait.Store(runtime.GOMAXPROCS(0) > l.loops)
}
