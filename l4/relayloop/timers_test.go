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

// The wheel fires every deadline at the first sweep at or after it (to the
// millisecond tick), never before, whatever was scheduled, moved or
// cancelled meanwhile; the loop never sleeps past the earliest deadline;
// and a deadline is looked at a bounded number of times.
func TestTimersFireOnTime(t *testing.T) {
	const ms = int64(time.Millisecond)
	const topBucket = int64(1) << ((wheelLevels - 1) * levelShift) // ticks
	const topReach = wheelSlots * topBucket
	var tm timers
	flows := make([]*Flow, 2000)
	deadline := map[*Flow]int64{}
	looks := map[*Flow]int{}
	for i := range flows {
		flows[i] = &Flow{id: uint32(i)}
	}
	now := int64(1_800_000_000_000) * ms // in 2027, in whole ticks
	tm.advance(now)
	// Deadlines from 1 ms to 20 days ahead, some of them in whole ticks.
	ahead := func() int64 {
		d := rand.Int64N(int64(20*24*time.Hour)) >> rand.IntN(40)
		if rand.IntN(2) == 0 {
			d -= d % ms
		}
		return max(d, 1)
	}
	for step := range 50_000 {
		for range rand.IntN(3) {
			f := flows[rand.IntN(len(flows))]
			if rand.IntN(4) == 0 {
				tm.cancel(f)
				delete(deadline, f)
				continue
			}
			deadline[f] = now + ahead()
			// Once per level it passes, every other level, plus once per
			// top-level reach (12 days) beyond the top level's reach.
			looks[f] = -int(((deadline[f] - now) / ms) / (topReach - topBucket))
			tm.schedule(f, deadline[f])
		}
		at, woke := tm.next()
		if woke {
			for _, d := range deadline {
				if at > (d+ms-1)/ms*ms {
					t.Fatalf("step %d: next is %d ms ahead, but a deadline is due in %d ns", step, (at-now)/ms, d-now)
				}
			}
			// Jump to the next start, or sweep early, or late.
			switch rand.IntN(8) {
			case 0:
				now += rand.Int64N(2) * ms
			case 1:
				now = max(now, at) + rand.Int64N(100)*ms
			default:
				now = max(now, at)
			}
		} else {
			now += rand.Int64N(1000) * ms
		}
		tm.collectDue(now)
		popped := 0
		for f := tm.popDue(); f != nil; f = tm.popDue() {
			popped++
			d, ok := deadline[f]
			if !ok {
				t.Fatalf("step %d: popped a flow that was cancelled", step)
			}
			if looks[f]++; looks[f] > wheelLevels/2+1 {
				t.Fatalf("step %d: a deadline %d ms ahead was looked at %d times too many", step, (d-now)/ms, looks[f]-wheelLevels/2-1)
			}
			if d > now {
				tm.schedule(f, d) // early: as the sweep does
				continue
			}
			delete(deadline, f)
		}
		if woke && now >= at && popped == 0 {
			t.Fatalf("step %d: woke for a bucket that holds no flow", step)
		}
		for _, d := range deadline {
			if d <= now {
				t.Fatalf("step %d: a deadline %d ns past was not swept", step, now-d)
			}
		}
	}
	for f, d := range deadline {
		if !tm.scheduled(f) {
			t.Fatalf("a flow due in %d ns is no longer scheduled", d-now)
		}
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
		t.Cleanup(func() { f.Close(closereason.Shutdown) }) // the done above ignores it
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
	// A 2 s deadline is looked at twice: when its 64 ms bucket starts, and
	// at its tick. A walk over every flow at each 100 ms sweep would look
	// at about n * 35 entries by now.
	if swept > 2*n/2+int64(len(busy))*10 {
		t.Fatalf("the sweep looked at %d timer entries for %d expiring flows among %d", swept, n/2, n)
	}
	t.Logf("%d idle timeouts of %s fired after %s to %s (median %s); the sweep looked at %d entries",
		len(ended), idle, ended[0], ended[len(ended)-1], ended[len(ended)/2], swept)
}
