//go:build linux

package main

import (
	"os"
	"runtime"

	"go.uber.org/zap"
)

// sizeEventLoops picks the number of event loops and sizes Go's scheduler
// around them, once per process, before the server starts.
//
// An event loop waits in epoll_wait, a system call, while it holds one of
// Go's Ps (the right to run Go code). With as many loops as Ps, every P was
// held by a waiting loop most of the time: a goroutine that became runnable
// (an accept, a dial completing, a TLS handshake) had to wait until Go's
// monitor thread took a P back, and the monitor did so, waking a thread to
// look for work, every time a loop waited for more than its 20 µs tick.
// In the benchmark's 32-connection ping-pong that churn put l4edge's p99
// 15-25% above HAProxy's.
//
// So there is one loop per CPU that Go would use (GOMAXPROCS, which honours
// the container's CPU limit) and one P more for Go code, which is then never
// without a P while the loops wait. One P more per loop (GOMAXPROCS
// doubled) cut the ping-pong p99 as well but cost 18% more CPU per TLS
// handshake, with 32 handshakes spread over twice as many threads as CPUs.
// A GOMAXPROCS set in the environment is taken as the operator's choice and
// left as it is; the loops are then one fewer (at least one), so goroutines
// still have a P. (The loops wait without giving their Ps back while Go
// code has one of its own: see relayloop's wait.)
func sizeEventLoops(log *zap.Logger) int {
	loops := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(loops + 1)
	} else {
		loops = max(loops-1, 1)
	}
	log.Debug("event loops", zap.Int("loops", loops), zap.Int("gomaxprocs", runtime.GOMAXPROCS(0)))
	return loops
}
