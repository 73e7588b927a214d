//go:build linux

package relayloop

import (
	"crypto/rand"
	"io"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain gives the tests' relays (two loops) a P to spare, as l4edge
// does, so they wait with raw system calls; TestPlainWait covers the other
// case.
func TestMain(m *testing.M) {
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 2) + 1)
	os.Exit(m.Run())
}

// waitsRaw reports whether every loop of r keeps its P while it waits.
func waitsRaw(r *Relay) bool {
	for _, l := range r.loops {
		if !l.rawWait.Load() {
			return false
		}
	}
	return true
}

// With as many loops as Ps the loops wait with plain system calls (a raw
// wait would leave other goroutines no P), and bytes still flow.
func TestPlainWait(t *testing.T) {
	r, err := New(runtime.GOMAXPROCS(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if waitsRaw(r) {
		t.Fatal("loops wait raw with no P to spare")
	}
	if !waitsRaw(newRelay(t)) {
		t.Fatal("two loops with a P to spare do not wait raw")
	}
	p := newPair(t, r, listen(t), 0)
	want := make([]byte, 1<<20)
	_, _ = rand.Read(want)
	go func() { _, _ = p.client.Write(want); _ = p.client.CloseWrite() }()
	_ = p.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(p.backend)
	if err != nil || len(got) != len(want) {
		t.Fatalf("backend read %d of %d bytes, %v", len(got), len(want), err)
	}
}

// Collections and a busy spare P do not stall behind loops blocked in raw
// waits: the runtime interrupts them, and what a loop starts (FlowEnded)
// runs even while every other P is busy.
func TestRawWaitLetsGoroutinesRun(t *testing.T) {
	r := newRelay(t)
	if !waitsRaw(r) {
		t.Fatal("loops do not wait raw")
	}
	stop := make(chan struct{})
	defer close(stop)
	for range runtime.GOMAXPROCS(0) { // keep every P but the loops' busy
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	for range 5 {
		start := time.Now()
		runtime.GC()
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("a collection took %s with loops waiting", el)
		}
	}
	p := newPair(t, r, listen(t), 0)
	p.client.Close()
	p.backend.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("FlowEnded did not run")
	}
}

// A loop that keeps its P yields it when a goroutine waits for a P, and
// otherwise only every yieldAtLeast: busy relaying a conversation with
// nothing queued, it does not yield at every millisecond's look, but it
// still yields often enough that the runtime need not preempt it.
func TestBusyLoopYieldsSeldom(t *testing.T) {
	r := newRelay(t)
	if !waitsRaw(r) {
		t.Fatal("loops do not wait raw")
	}
	p := newPair(t, r, listen(t), 0)
	go func() { _, _ = io.Copy(p.backend, p.backend) }() // the backend echoes
	yields := func() (n int64) {
		for _, l := range r.loops {
			n += l.yields.Load()
		}
		return n
	}
	before, start := yields(), time.Now()
	msg, rounds := []byte("ping"), 0
	for ; time.Since(start) < 500*time.Millisecond; rounds++ {
		if _, err := p.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(p.client, msg); err != nil {
			t.Fatal(err)
		}
	}
	elapsed, n := time.Since(start), yields()-before
	// Yielding at each look would make about one yield a millisecond; the
	// floor alone, one per yieldAtLeast.
	lo, hi := int64(elapsed/(2*yieldAtLeast)), int64(elapsed/(2*yieldEvery))
	if n < lo || n > hi {
		t.Fatalf("the loops yielded %d times in %s of %d round trips with nothing queued; want %d to %d", n, elapsed.Round(time.Millisecond), rounds, lo, hi)
	}
	t.Logf("%d yields in %s of %d round trips", n, elapsed.Round(time.Millisecond), rounds)
}

// An idle relay sleeps: after the first empty raw wait its loops wait with
// plain system calls and no timeout, instead of waking every 10 ms.
func TestIdleLoopsSleep(t *testing.T) {
	r := newRelay(t)
	p := newPair(t, r, listen(t), 0) // some traffic first: the loops wait raw
	_, _ = p.client.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(p.backend, buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // one empty raw wait makes a loop quiet
	before := make([]int64, len(r.loops))
	for i, l := range r.loops {
		before[i] = l.waits.Load()
	}
	time.Sleep(500 * time.Millisecond)
	for i, l := range r.loops {
		// Raw waits would be about 50 here (one per 10 ms).
		if n := l.waits.Load() - before[i]; n > 5 {
			t.Fatalf("loop %d woke %d times in 500ms while idle", i, n)
		}
	}
}
