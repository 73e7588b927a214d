//go:build linux

package main

import (
	"math"
	"math/bits"
	"time"
)

// histSub is the number of sub-buckets per power of two: 64 gives a
// relative error under 1.6%.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = (64-histSubBits-1)*histSub + 2*histSub
)

// hist is a log-linear latency histogram of bounded size. The zero value is
// ready to use; it is not safe for concurrent use (give each worker its own
// and merge them).
type hist struct {
	counts [histBuckets]uint64
	n      uint64
}

// histIndex returns the bucket of v nanoseconds.
func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return shift*histSub + int(v>>shift)
}

// histLower returns the smallest value that falls into bucket i.
func histLower(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	mant := uint64(i - shift*histSub)
	return mant << shift
}

// record adds one observation.
func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
}

// merge adds every observation of o to h.
func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the q-quantile (0 < q <= 1) as the middle of its bucket,
// or NaN when h is empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return time.Duration(math.NaN())
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo := histLower(i)
			hi := lo + 1
			if i+1 < len(h.counts) {
				hi = histLower(i + 1)
			}
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	return time.Duration(histLower(len(h.counts) - 1))
}

// quantileMicros returns the q-quantile in microseconds, NaN when empty.
func (h *hist) quantileMicros(q float64) float64 {
	if h.n == 0 {
		return math.NaN()
	}
	return float64(h.quantile(q)) / float64(time.Microsecond)
}
