//go:build linux

package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// cellKey names one scenario measured on one target.
type cellKey struct{ scenario, target string }

// cell gathers every run of one scenario on one target.
type cell struct {
	// runs holds the metric values of each successful run.
	runs []map[string]float64
	// failed counts failed operations over all runs; firstErr is the first.
	failed   uint64
	firstErr string
	// errs lists runs that produced no figures, and why.
	errs []string
	// tls is the negotiated TLS description, if any.
	tls string
}

// results are all measurements of a harness run.
type results struct {
	targets   []string
	scenarios []scenario
	cells     map[cellKey]*cell
}

// newResults prepares empty results for the given targets and scenarios.
func newResults(targets []string, scens []scenario) *results {
	return &results{targets: targets, scenarios: scens, cells: map[cellKey]*cell{}}
}

// cell returns the cell of scenario s on target t, creating it.
func (r *results) cell(s, t string) *cell {
	k := cellKey{s, t}
	c := r.cells[k]
	if c == nil {
		c = &cell{}
		r.cells[k] = c
	}
	return c
}

// add records one run's outcome or error.
func (r *results) add(s, t string, o outcome, err error) {
	c := r.cell(s, t)
	if err != nil {
		c.errs = append(c.errs, err.Error())
		return
	}
	c.runs = append(c.runs, o.values)
	c.failed += o.failed
	if c.firstErr == "" && o.firstErr != nil {
		c.firstErr = o.firstErr.Error()
	}
	if c.tls == "" {
		c.tls = o.tls
	}
}

// median returns the median of metric key over the cell's runs.
func (r *results) median(s, t, key string) (float64, bool) {
	c := r.cells[cellKey{s, t}]
	if c == nil {
		return 0, false
	}
	var vs []float64
	for _, run := range c.runs {
		if v, ok := run[key]; ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// ratio is one ratio column: num's median over den's.
type ratio struct{ num, den string }

// ratios returns the ratio columns the present targets allow.
func (r *results) ratios() []ratio {
	has := func(t string) bool { return slices.Contains(r.targets, t) }
	var out []ratio
	for _, p := range []string{targetHAProxy, targetNginx} {
		if has(targetL4edge) && has(p) {
			out = append(out, ratio{targetL4edge, p})
		}
	}
	if has(targetL4edge) && has(targetL4edgeNoIdle) {
		out = append(out, ratio{targetL4edge, targetL4edgeNoIdle}) // the cost of idle_timeout
	}
	if has(targetL4edge) && has(targetL4edgeBaseline) {
		out = append(out, ratio{targetL4edge, targetL4edgeBaseline}) // the change between builds
	}
	if has(targetDirect) {
		for _, p := range []string{targetL4edge, targetHAProxy, targetNginx} {
			if has(p) {
				out = append(out, ratio{p, targetDirect})
			}
		}
	}
	return out
}

// table renders the results as one Markdown table: a row per metric, a
// column per target (medians), then the ratio columns.
func (r *results) table() string {
	var b strings.Builder
	header := []string{"scenario", "metric"}
	header = append(header, r.targets...)
	rats := r.ratios()
	for _, ra := range rats {
		header = append(header, ra.num+"/"+ra.den)
	}
	writeRow(&b, header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
		if i >= 2 {
			sep[i] = "---:"
		}
	}
	writeRow(&b, sep)
	for _, s := range r.scenarios {
		for _, m := range s.metrics {
			arrow := "↓"
			if m.higher {
				arrow = "↑"
			}
			row := []string{s.label, m.label + " " + arrow}
			for _, t := range r.targets {
				row = append(row, r.valueCell(s.name, t, m))
			}
			for _, ra := range rats {
				row = append(row, r.ratioCell(s.name, m, ra))
			}
			writeRow(&b, row)
		}
	}
	return b.String()
}

// valueCell formats one median, "ERR" when every run failed.
func (r *results) valueCell(s, t string, m metric) string {
	v, ok := r.median(s, t, m.key)
	if !ok {
		if c := r.cells[cellKey{s, t}]; c != nil && len(c.errs) > 0 {
			return "ERR"
		}
		return "—"
	}
	return strconv.FormatFloat(v, 'f', m.prec, 64)
}

// ratioCell formats one ratio, "—" where it means nothing.
func (r *results) ratioCell(s string, m metric, ra ratio) string {
	if m.noRatio || (m.proxyOnly && ra.den == targetDirect) {
		return "—"
	}
	num, ok1 := r.median(s, ra.num, m.key)
	den, ok2 := r.median(s, ra.den, m.key)
	if !ok1 || !ok2 || den == 0 {
		return "—"
	}
	return strconv.FormatFloat(num/den, 'f', 2, 64)
}

// writeRow writes one Markdown table row.
func writeRow(b *strings.Builder, cells []string) {
	b.WriteString("| ")
	b.WriteString(strings.Join(cells, " | "))
	b.WriteString(" |\n")
}

// notes lists TLS parameters, failed operations and failed runs.
func (r *results) notes() []string {
	var out []string
	tlsSeen := map[string]string{}
	for _, t := range r.targets {
		for _, s := range r.scenarios {
			if c := r.cells[cellKey{s.name, t}]; c != nil && c.tls != "" && tlsSeen[t] == "" {
				tlsSeen[t] = c.tls
			}
		}
		if tlsSeen[t] != "" {
			out = append(out, fmt.Sprintf("TLS negotiated with %s: %s", t, tlsSeen[t]))
		}
	}
	for _, s := range r.scenarios {
		for _, t := range r.targets {
			c := r.cells[cellKey{s.name, t}]
			if c == nil {
				continue
			}
			if c.failed > 0 {
				out = append(out, fmt.Sprintf("%s on %s: %d operations failed (first: %s)", s.name, t, c.failed, c.firstErr))
			}
			for _, e := range c.errs {
				out = append(out, fmt.Sprintf("%s on %s: run failed: %s", s.name, t, oneLine(e)))
			}
			out = append(out, spreadNotes(s, t, c)...)
		}
	}
	return out
}

// noisySpread is the max/min ratio of a cell's runs worth a note.
const noisySpread = 1.5

// spreadNotes flags metrics whose runs differ by more than noisySpread:
// their median deserves less trust (a busy machine, usually).
func spreadNotes(s scenario, t string, c *cell) []string {
	var out []string
	for _, m := range s.metrics {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, run := range c.runs {
			if v, ok := run[m.key]; ok && !math.IsNaN(v) {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
		if len(c.runs) >= 2 && lo > 0 && hi/lo > noisySpread {
			out = append(out, fmt.Sprintf("%s on %s: %s varied from %.4g to %.4g across runs; treat its median with care",
				s.name, t, m.label, lo, hi))
		}
	}
	return out
}

// failures counts runs that produced no figures.
func (r *results) failures() int {
	n := 0
	for _, c := range r.cells {
		n += len(c.errs)
	}
	return n
}

// oneLine shortens a multi-line error for the notes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return s
}
