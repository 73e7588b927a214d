package admin

import (
	"math"
	"sync"
	"time"
)

// The status page's charts cover 15 minutes: historySize samples taken
// historyEvery. The ring holds that many samples whatever the traffic; a
// sample holds one point per listener and backend of the configuration.
const (
	historyEvery = 5 * time.Second
	historySize  = 180
)

// point is one listener's or backend's sample: open connections, and the
// rates of new connections and relayed bytes since the previous sample
// (NaN for the first sample of a name).
type point struct{ open, newPerSec, bytesPerSec float64 }

type sample struct {
	at        time.Time
	listeners map[string]point
	backends  map[backendKey]point
}

type backendKey struct{ pool, address string }

// cumulative are the counters a sample's rates are computed from.
type cumulative struct {
	at        time.Time
	listeners map[string][2]float64 // accepted, bytes
	backends  map[backendKey][2]float64
}

// history is the fixed-size ring of samples behind the charts.
type history struct {
	every time.Duration
	size  int

	mu    sync.Mutex
	ring  []sample // capacity size; ring[start] is the oldest of n
	start int
	n     int
	prev  cumulative
}

func newHistory(every time.Duration, size int) *history {
	return &history{every: every, size: size, ring: make([]sample, size)}
}

// add appends a sample, overwriting the oldest when the ring is full.
func (h *history) add(now cumulative, open map[string]float64, openB map[backendKey]float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	dt := now.at.Sub(h.prev.at).Seconds()
	rate := func(cur, prev [2]float64, ok bool, i int) float64 {
		if !ok || dt <= 0 {
			return math.NaN()
		}
		return max(cur[i]-prev[i], 0) / dt // a counter reset by a reload is not negative traffic
	}
	s := sample{at: now.at, listeners: make(map[string]point, len(now.listeners)), backends: make(map[backendKey]point, len(now.backends))}
	for k, c := range now.listeners {
		p, ok := h.prev.listeners[k]
		s.listeners[k] = point{open[k], rate(c, p, ok, 0), rate(c, p, ok, 1)}
	}
	for k, c := range now.backends {
		p, ok := h.prev.backends[k]
		s.backends[k] = point{openB[k], rate(c, p, ok, 0), rate(c, p, ok, 1)}
	}
	h.prev = now
	if h.n < h.size {
		h.ring[(h.start+h.n)%h.size] = s
		h.n++
		return
	}
	h.ring[h.start] = s
	h.start = (h.start + 1) % h.size
}

// newest is the time of the latest sample (zero before the first).
func (h *history) newest() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return time.Time{}
	}
	return h.ring[(h.start+h.n-1)%h.size].at
}

// samples returns the ring's samples, oldest first.
func (h *history) samples() []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]sample, h.n)
	for i := range h.n {
		out[i] = h.ring[(h.start+i)%h.size]
	}
	return out
}

// Series is one chart's three lines; a missing or first point is null.
type Series struct {
	Open        []*float64 `json:"open"`
	NewPerSec   []*float64 `json:"new_per_sec"`
	BytesPerSec []*float64 `json:"bytes_per_sec"`
}

// HistoryDoc is GET /status/history: the charts' data, one entry per
// sample time in Times (Unix milliseconds).
type HistoryDoc struct {
	IntervalSeconds float64                       `json:"interval_seconds"`
	Size            int                           `json:"size"`
	Times           []int64                       `json:"times"`
	Listeners       map[string]*Series            `json:"listeners"`
	Backends        map[string]map[string]*Series `json:"backends"`
}

// doc lays the ring out as one series per name.
func (h *history) doc() HistoryDoc {
	ss := h.samples()
	d := HistoryDoc{IntervalSeconds: h.every.Seconds(), Size: h.size, Times: make([]int64, len(ss)),
		Listeners: map[string]*Series{}, Backends: map[string]map[string]*Series{}}
	series := func(m map[string]*Series, k string) *Series {
		if m[k] == nil {
			n := len(ss)
			m[k] = &Series{Open: make([]*float64, n), NewPerSec: make([]*float64, n), BytesPerSec: make([]*float64, n)}
		}
		return m[k]
	}
	for i, s := range ss {
		d.Times[i] = s.at.UnixMilli()
		for k, p := range s.listeners {
			series(d.Listeners, k).set(i, p)
		}
		for k, p := range s.backends {
			if d.Backends[k.pool] == nil {
				d.Backends[k.pool] = map[string]*Series{}
			}
			series(d.Backends[k.pool], k.address).set(i, p)
		}
	}
	return d
}

func (s *Series) set(i int, p point) {
	val := func(v float64) *float64 {
		if math.IsNaN(v) {
			return nil
		}
		return &v
	}
	s.Open[i], s.NewPerSec[i], s.BytesPerSec[i] = val(p.open), val(p.newPerSec), val(p.bytesPerSec)
}

// sampleNow reads the running state into the ring.
func (s *Server) sampleNow(now time.Time) {
	open := s.src.Connections()
	bbytes, lbytes := s.metrics.traffic(open)
	c := cumulative{at: now, listeners: map[string][2]float64{}, backends: map[backendKey][2]float64{}}
	openL, openB := map[string]float64{}, map[backendKey]float64{}
	for _, st := range s.src.Listeners() {
		c.listeners[st.Name] = [2]float64{float64(st.Accepted), lbytes[st.Name]}
		openL[st.Name] = float64(st.Active)
	}
	for name, p := range s.pools() {
		for _, b := range p.Backends() {
			snap := b.Snapshot()
			k := backendKey{name, b.Address}
			c.backends[k] = [2]float64{float64(snap.Total),
				bbytes[bytesKey{name, b.Address, "to_backend"}] + bbytes[bytesKey{name, b.Address, "to_client"}]}
			openB[k] = float64(snap.Active)
		}
	}
	s.history.add(c, openL, openB)
}

// sample takes a sample every history.every until done is closed.
func (s *Server) sample(done <-chan struct{}) {
	t := time.NewTicker(s.history.every)
	defer t.Stop()
	s.sampleNow(time.Now())
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			s.sampleNow(now)
		}
	}
}
