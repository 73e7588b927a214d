package admin

import (
	"fmt"
	"testing"
	"time"
)

// Rates are per second between samples; the first sample of a name, and
// samples from before a name existed, are null; a counter that went back
// (a reload rebuilt it) is a rate of 0, not negative traffic; the ring
// keeps the newest size samples.
func TestHistoryRates(t *testing.T) {
	h := newHistory(5*time.Second, 3)
	t0 := time.Unix(1000, 0)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 5 * time.Second) }
	b := backendKey{"ws", "10.0.0.1:80"}
	add := func(i int, accepted, bytes float64, backend bool) {
		c := cumulative{at: at(i), listeners: map[string][2]float64{"edge": {accepted, bytes}}, backends: map[backendKey][2]float64{}}
		openB := map[backendKey]float64{}
		if backend {
			c.backends[b] = [2]float64{accepted, bytes}
			openB[b] = 2
		}
		h.add(c, map[string]float64{"edge": float64(i)}, openB)
	}
	add(0, 10, 1000, false)
	add(1, 60, 6000, true)   // 50 connections and 5000 bytes in 5 s
	add(2, 20, 7000, true)   // accepted went back: 0 per second
	add(3, 120, 17000, true) // pushes sample 0 out
	d := h.doc()
	str := func(v []*float64) string {
		out := ""
		for _, p := range v {
			if p == nil {
				out += " null"
			} else {
				out += fmt.Sprintf(" %g", *p)
			}
		}
		return out
	}
	if len(d.Times) != 3 || d.Times[0] != at(1).UnixMilli() || d.Size != 3 || d.IntervalSeconds != 5 {
		t.Fatalf("times %v size %d interval %v", d.Times, d.Size, d.IntervalSeconds)
	}
	l := d.Listeners["edge"]
	if got := str(l.Open) + " |" + str(l.NewPerSec) + " |" + str(l.BytesPerSec); got != " 1 2 3 | 10 0 20 | 1000 200 2000" {
		t.Fatalf("listener series %q", got)
	}
	s := d.Backends["ws"]["10.0.0.1:80"]
	if got := str(s.Open) + " |" + str(s.NewPerSec); got != " 2 2 2 | null 0 20" {
		t.Fatalf("backend series %q", got)
	}
}
