//go:build linux

package relayloop

import (
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/closereason"
)

// The heap pops flows in deadline order whatever was scheduled, moved or
// cancelled before.
func TestTimersOrder(t *testing.T) {
	var tm timers
	flows := make([]*Flow, 500)
	want := map[*Flow]int64{}
	for i := range flows {
		flows[i] = &Flow{id: uint32(i)}
	}
	for range 3000 {
		f := flows[rand.IntN(len(flows))]
		switch rand.IntN(3) {
		case 0, 1:
			at := rand.Int64N(1e6)
			tm.schedule(f, at)
			want[f] = at
		case 2:
			tm.cancel(f)
			delete(want, f)
		}
	}
	var got []int64
	for f := tm.popDue(1e6); f != nil; f = tm.popDue(1e6) {
		at, ok := want[f]
		if !ok {
			t.Fatalf("popped flow %d, which was cancelled", f.id)
		}
		delete(want, f)
		got = append(got, at)
	}
	if len(want) != 0 || !slices.IsSorted(got) {
		t.Fatalf("%d scheduled flows never popped; popped in order: %v", len(want), slices.IsSorted(got))
	}
}

// 8,000 flows on two loops: the half with a 2 s idle timeout all end
// within 10% of it, the half with 1 h and the flows with traffic never do,
// and the sweep looks at the due entries only, not at every flow.
func TestIdleTimeoutAtScale(t *testing.T) {
	const n, idle = 8000, 2 * time.Second
	r := newRelay(t)
	ln := listen(t)
	var mu sync.Mutex
	ended := make([]time.Duration, 0, n/2)
	starts := make([]time.Time, n)
	for i := range n {
		// Both ends of one socket pair: a flow that never moves a byte,
		// at two descriptors, so 8,000 fit the descriptor limit.
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("socketpair %d: %v", i, err)
		}
		timeout := time.Hour
		if i%2 == 0 {
			timeout = idle
		}
		starts[i] = time.Now()
		done := DoneFunc(func(res Result) {
			if res.Reason == closereason.Shutdown {
				return // the test's clean-up
			}
			mu.Lock()
			defer mu.Unlock()
			if res.Reason != closereason.IdleTimeout {
				t.Errorf("flow %d ended %v, want idle timeout", i, res.Reason)
			}
			if i%2 == 1 {
				t.Errorf("flow %d with a 1 h timeout ended", i)
			}
			ended = append(ended, time.Since(starts[i]))
		})
		f := &Flow{}
		if err := r.start(f, fds[0], fds[1], timeout, done); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close(closereason.Shutdown) })
	}
	busy := make([]*pair, 4)
	for i := range busy {
		busy[i] = newPair(t, r, ln, idle)
		go func() { _, _ = io.Copy(io.Discard, busy[i].backend) }()
	}
	for end := time.Now().Add(idle + idle/2); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		for _, p := range busy {
			if _, err := p.client.Write([]byte("tick")); err != nil {
				t.Fatalf("a flow with traffic was cut: %v", err)
			}
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		got := len(ended)
		mu.Unlock()
		if got >= n/2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ended) != n/2 {
		t.Fatalf("%d of %d flows with a %s idle timeout ended", len(ended), n/2, idle)
	}
	slices.Sort(ended)
	if lo, hi := ended[0], ended[len(ended)-1]; lo < idle || hi > idle+idle/10 {
		t.Fatalf("idle timeouts fired after %s to %s; want within [%s, %s]", lo, hi, idle, idle+idle/10)
	}
	for _, p := range busy {
		select {
		case res := <-p.done:
			t.Fatalf("a flow with traffic ended: %+v", res)
		default:
		}
	}
	swept := int64(0)
	for _, l := range r.loops {
		swept += l.swept.Load()
	}
	// A walk over every flow at each 100 ms sweep would look at about
	// n * 35 entries by now.
	if swept > n/2+int64(len(busy))*10 {
		t.Fatalf("the sweep looked at %d timer entries for %d expiring flows among %d", swept, n/2, n)
	}
	t.Logf("%d idle timeouts of %s fired after %s to %s (median %s); the sweep looked at %d entries",
		len(ended), idle, ended[0], ended[len(ended)-1], ended[len(ended)/2], swept)
}
