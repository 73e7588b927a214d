//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// soakSample is one reading of the l4edge process.
type soakSample struct {
	// At is the time since the soak began.
	At time.Duration
	// Goroutines is go_goroutines from /metrics; Conns the sum of
	// listeners[].active from /status: every accepted connection not yet
	// closed, those still being inspected (slowloris) included.
	Goroutines, Conns float64
	// FDs counts /proc/PID/fd; RSSMiB is VmRSS.
	FDs, RSSMiB float64
}

// sample reads l4edge every sampleEvery until ctx ends and returns the
// readings. A failed reading, or l4edge gone, is recorded as unexplained.
func (sc *soakScene) sample(ctx context.Context, l *soakLedger) []soakSample {
	var out []soakSample
	t0 := time.Now()
	take := func() {
		s, err := sc.sampleOnce()
		if err != nil {
			l.unexplained("sample", err)
			return
		}
		s.At = time.Since(t0)
		out = append(out, s)
		sc.log.Sugar().Infof("soak %5.0fs: goroutines %.0f, descriptors %.0f, RSS %.1f MiB, open connections %.0f",
			s.At.Seconds(), s.Goroutines, s.FDs, s.RSSMiB, s.Conns)
	}
	take()
	tick := time.NewTicker(sc.p.sampleEvery)
	defer tick.Stop()
	for range maxOps {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
			take()
		}
	}
	return out
}

// sampleOnce reads the four figures.
func (sc *soakScene) sampleOnce() (soakSample, error) {
	if err := sc.l4edge.exitErr(); err != nil {
		return soakSample{}, err
	}
	ps, err := sampleTree(sc.l4edge.pid())
	if err != nil {
		return soakSample{}, err
	}
	fams, err := scrape(sc.admin, sc.metricsURL)
	if err != nil {
		return soakSample{}, err
	}
	if fams["go_goroutines"] == nil {
		return soakSample{}, fmt.Errorf("%s has no go_goroutines", sc.metricsURL)
	}
	conns, err := sc.openConns()
	if err != nil {
		return soakSample{}, err
	}
	return soakSample{
		Goroutines: metricSum(fams, "go_goroutines", nil),
		Conns:      conns,
		FDs:        ps.FDs,
		RSSMiB:     ps.RSS / (1 << 20),
	}, nil
}

// openConns sums listeners[].active from the admin API's /status.
func (sc *soakScene) openConns() (float64, error) {
	url := "http://" + sc.conf.Admin + "/status"
	resp, err := sc.admin.Get(url)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	var st struct {
		Listeners []struct {
			Active int64 `json:"active"`
		} `json:"listeners"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("get %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("decode %s: %w", url, err)
	}
	var n int64
	for _, l := range st.Listeners {
		n += l.Active
	}
	return float64(n), nil
}

// scrape fetches and parses a Prometheus text endpoint.
func scrape(hc *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return fams, nil
}

// metricSum sums the gauge or counter values of name over the series whose
// labels include every pair of want.
func metricSum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}
