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
	// scheduler queued on that P run (see docs/design.md, "The raw wait").
	yieldEvery = time.Millisecond
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
	// plain waits until events come again (docs/design.md, "The raw wait").
	l.quiet = n == 0 && timeout > 0
	return int(n), nil
}

// checkRawWait decides whether wait may keep the loop's P.
func (l *loop) checkRawWait(now time.Time) {
	l.checked = now
	l.rawWait.Store(runtime.GOMAXPROCS(0) > l.loops)
}
