//go:build linux

package main

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistBucketsCoverValues(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100000; i++ {
		v := r.Uint64() >> r.IntN(64)
		idx := histIndex(v)
		if idx < 0 || idx >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, outside [0,%d)", v, idx, histBuckets)
		}
		lo := histLower(idx)
		if lo > v {
			t.Fatalf("value %d in bucket %d whose lower bound is %d", v, idx, lo)
		}
		if idx+1 < histBuckets && histLower(idx+1) <= v {
			t.Fatalf("value %d in bucket %d but bucket %d starts at %d", v, idx, idx+1, histLower(idx+1))
		}
		if v >= 128 && float64(v-lo)/float64(v) > 1.0/64 {
			t.Fatalf("value %d: bucket lower bound %d is more than 1/64 away", v, lo)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	if !math.IsNaN(h.quantileMicros(0.5)) {
		t.Fatal("empty histogram has a median")
	}
	// 1..10000 µs, uniformly.
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	var other hist
	other.record(time.Hour)
	h.merge(&other)
	for _, c := range []struct{ q, want float64 }{{0.5, 5000}, {0.99, 9900}, {0.01, 100}} {
		got := h.quantileMicros(c.q)
		if math.Abs(got-c.want)/c.want > 0.02 {
			t.Errorf("quantile %v = %.1f µs, want %.0f ± 2%%", c.q, got, c.want)
		}
	}
	if got := h.quantile(1); got < 59*time.Minute || got > 61*time.Minute {
		t.Errorf("max = %v, want about 1h", got)
	}
}
