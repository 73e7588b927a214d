//go:build linux

package relayloop

import (
	"runtime"
	"runtime/metrics"
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
	// yieldEvery is how often a loop that keeps its P looks whether to
	// yield it (see yieldIfDue and docs/design.md, "The raw wait").
	yieldEvery = time.Millisecond
	// yieldAtLeast is how often a loop yields even with nothing queued:
	// twice per period of the runtime's forced preemption (10 ms), which
	// would otherwise interrupt a loop that never yields with a signal,
	// wherever it is.
	yieldAtLeast = 5 * time.Millisecond
	// checkProcsEvery is how often a loop looks at GOMAXPROCS again.
	checkProcsEvery = time.Second
)

// wait is epoll_wait(2), made as a raw system call (the loop keeps its P)
// while Go has a P to spare; why and what that gives up: docs/design.md,
// "The raw wait".
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
	l.yieldIfDue(now)
	if timeout < 0 || timeout > maxWaitMillis {
		timeout = maxWaitMillis
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(timeout), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	// A raw wait that timed out with nothing to do makes the loop quiet:
	// plain waits until events come again (docs/design.md, "The raw wait").
	l.quiet = n == 0 && timeout > 0
	return int(n), nil
}

// yieldIfDue lets other goroutines have the loop's P before a raw wait
// when the loop started some, or, looking at most every yieldEvery, when
// some wait for a P or the loop has not yielded for yieldAtLeast.
func (l *loop) yieldIfDue(now time.Time) {
	if !l.spawned && now.Sub(l.lookedQueued) < yieldEvery {
		return
	}
	if l.spawned || now.Sub(l.yielded) >= yieldAtLeast || l.goroutinesQueued() {
		runtime.Gosched()
		l.yielded = now
		l.yields.Add(1)
	}
	l.spawned, l.lookedQueued = false, now
}

// queuedMetric counts goroutines ready to run but not running, on every
// P's run queue and the global one.
const queuedMetric = "/sched/goroutines/runnable:goroutines"

// goroutinesQueued reports whether some goroutine waits for a P, which
// may be this loop's: only then is a yield worth its cost. A yield puts
// the loop's goroutine on the global queue and wakes a thread for the
// spare P, which then finds nothing to do and sleeps again; yielding every
// millisecond with nothing queued cost two loops 2,000 such wake-ups a
// second under the wss benchmark. Reading the count takes the scheduler's
// lock for a walk over the Ps, about 60 ns.
func (l *loop) goroutinesQueued() bool {
	metrics.Read(l.queued)
	return l.queued[0].Value.Kind() != metrics.KindUint64 || l.queued[0].Value.Uint64() > 0
}

// checkRawWait decides whether wait may keep the loop's P.
func (l *loop) checkRawWait(now time.Time) {
	l.checked = now
	l.rawWait.Store(runtime.GOMAXPROCS(0) > l.loops)
}
