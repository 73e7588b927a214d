//go:build linux

package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// maxGrowth is how far the last quarter's mean may rise above the second
// quarter's before a line counts as growing without bound.
const maxGrowth = 0.10

// lineStats are one line's figures.
type lineStats struct {
	line                        soakLine
	start, peak, end, q2, q4    float64
	growth, allowed             float64 // q4/q2 - 1, and the bound applied
	grewWithoutBound, hasSample bool
}

// soakVerdict is the soak's outcome: per-line figures and every problem.
type soakVerdict struct {
	lines    []lineStats
	problems []string
}

// quarterMean is the mean of samples[n*q/4 : n*(q+1)/4] (q from 0).
func quarterMean(vals []float64, q int) float64 {
	n := len(vals)
	part := vals[n*q/4 : n*(q+1)/4]
	var sum float64
	for _, v := range part {
		sum += v
	}
	return sum / float64(len(part))
}

// judge computes each line's figures and lists the problems: a line whose
// last quarter's mean is more than 10% above its second quarter's (for
// goroutines, descriptors and RSS the bound widens by the open connections'
// own rise, which those follow), any cut held connection, any unexplained
// error, and any driver that did nothing.
func (r *soakResult) judge() soakVerdict {
	var v soakVerdict
	if len(r.samples) < 8 {
		v.problems = append(v.problems, fmt.Sprintf("only %d samples; the quarters need 8", len(r.samples)))
		return v
	}
	lines := soakLines()
	conns := r.series(lines[len(lines)-1])
	connRise := max(1, quarterMean(conns, 3)/max(quarterMean(conns, 1), 1))
	for i, line := range lines {
		vals := r.series(line)
		st := lineStats{line: line, start: vals[0], peak: slices.Max(vals), end: vals[len(vals)-1],
			q2: quarterMean(vals, 1), q4: quarterMean(vals, 3), hasSample: true}
		st.allowed = 1 + maxGrowth
		if i < len(lines)-1 {
			st.allowed *= connRise
		}
		st.growth = st.q4/max(st.q2, 1e-9) - 1
		if st.q4 > st.q2*st.allowed {
			st.grewWithoutBound = true
			v.problems = append(v.problems, fmt.Sprintf("%s grows: last quarter's mean %.1f is %.1f%% above the second quarter's %.1f (bound %.1f%%)",
				line.name, st.q4, 100*st.growth, st.q2, 100*(st.allowed-1)))
		}
		v.lines = append(v.lines, st)
	}
	counts, _, errs, nErrs, _ := r.ledger.snapshot()
	for _, set := range []string{"held-term", "held-pass"} {
		if n := counts[set+" cut"]; n > 0 {
			v.problems = append(v.problems, fmt.Sprintf("%d %s connections were cut", n, set))
		}
	}
	want := map[string]int64{"held-term opened": int64(r.p.heldTerm), "held-pass opened": int64(r.p.heldPass)}
	for k, n := range want {
		if counts[k] != n {
			v.problems = append(v.problems, fmt.Sprintf("%s: %d of %d", k, counts[k], n))
		}
	}
	for _, k := range []string{"held-term messages", "held-pass messages", "churn-plain ok", "churn-tls ok", "slowloris closed", "reloads", "kills", "restarts"} {
		if counts[k] == 0 {
			v.problems = append(v.problems, "nothing counted for "+k)
		}
	}
	if nErrs > 0 {
		v.problems = append(v.problems, fmt.Sprintf("%d errors no injected fault explains; the first: %s", nErrs, strings.TrimSpace(errs[0])))
	}
	return v
}

// series returns one line's values over the samples.
func (r *soakResult) series(line soakLine) []float64 {
	out := make([]float64, len(r.samples))
	for i, s := range r.samples {
		out[i] = line.value(s)
	}
	return out
}

// summary is the verdict in a few lines for standard output.
func (v soakVerdict) summary() string {
	var b strings.Builder
	for _, st := range v.lines {
		fmt.Fprintf(&b, "%-17s start %8.1f  peak %8.1f  end %8.1f  (last quarter %+.1f%% on the second)\n",
			st.line.name, st.start, st.peak, st.end, 100*st.growth)
	}
	if len(v.problems) == 0 {
		b.WriteString("soak: PASS\n")
	}
	for _, p := range v.problems {
		fmt.Fprintf(&b, "soak: FAIL: %s\n", p)
	}
	return b.String()
}

// soakDocument renders bench/SOAK.md.
func soakDocument(r *soakResult, v soakVerdict, chart string) string {
	var b strings.Builder
	p, m := r.p, r.m
	counts, explained, errs, nErrs, durs := r.ledger.snapshot()
	b.WriteString("# l4edge soak\n\n")
	fmt.Fprintf(&b, "`make soak` (`go run ./bench -soak %v`), %s; `l4edge version`: %s.\n", p.dur, m.date.UTC().Format("2006-01-02 15:04 MST"), m.l4edge)
	fmt.Fprintf(&b, "Machine: %d cores (%s), %s, Linux %s, %s, descriptor limit %d. Whole run %v.\n\n",
		m.nproc, m.cpu, m.memory, m.kernel, m.goVersion, m.noFile, m.elapsed.Round(time.Second))
	b.WriteString("## What ran, all at once\n\n")
	fmt.Fprintf(&b, "- **Held WebSockets over terminated TLS**: %d opened (listener `term`, pool `held-term`, two `wsecho` backends), one message each %v: %d echoed, %d cut, %d closed cleanly at the end.\n",
		counts["held-term opened"], p.heldPing, counts["held-term messages"], counts["held-term cut"], counts["held-term closed cleanly"])
	fmt.Fprintf(&b, "- **Held WebSockets over passthrough** (TLS terminated by `wsecho -cert`): %d opened (listener `pass`, pool `held-pass`): %d echoed, %d cut, %d closed cleanly.\n",
		counts["held-pass opened"], counts["held-pass messages"], counts["held-pass cut"], counts["held-pass closed cleanly"])
	fmt.Fprintf(&b, "- **Churn**: %d workers of plain TCP to pool `churn` (64-byte echo, close, %v pause): %d ok, %d failed; %d worker(s) of terminated TLS to pool `held-term`: %d ok, %d failed.\n",
		p.churnPlain, p.churnGap, counts["churn-plain ok"], counts["churn-plain failed"], p.churnTLS, counts["churn-tls ok"], counts["churn-tls failed"])
	fmt.Fprintf(&b, "- **Reloads**: SIGHUP every %v (first at %v), each toggling a spare listener: %d, each counted as a success and seen to take effect.\n",
		p.reloadEvery, p.reloadAt, counts["reloads"])
	fmt.Fprintf(&b, "- **Backend kills**: the second backend of pool `churn` SIGKILLed every %v (first at %v) and restarted %v later on its address: %d kills, %d restarts.\n",
		p.killEvery, p.killAt, p.killDown, counts["kills"], counts["restarts"])
	sl := durs["slowloris"]
	fmt.Fprintf(&b, "- **Slowloris**: %d connections at a time sending a real ClientHello (%s) one byte per second to `term` (`inspect_timeout: %v`): %d closed by l4edge, %s.\n\n",
		p.slowloris, "post-quantum key shares", p.inspect, counts["slowloris closed"], durRange(sl))
	b.WriteString("Held connections go only to pools whose backends are never killed, so no cut is expected. A churn failure is explained only when it was a plain connection to pool `churn` open while a SIGKILL was sent. Every other error is unexplained and fails the soak.\n\n")
	if len(explained) > 0 {
		b.WriteString("Explained failures:\n\n")
		for _, k := range slices.Sorted(maps.Keys(explained)) {
			fmt.Fprintf(&b, "- %s: %d\n", k, explained[k])
		}
		b.WriteString("\n")
	}
	if len(r.logs) > 0 {
		b.WriteString("l4edge's own log (level: message, lines):\n\n")
		for _, k := range slices.Sorted(maps.Keys(r.logs)) {
			fmt.Fprintf(&b, "- %s: %d\n", k, r.logs[k])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "## The four lines (sampled every %v, %d samples)\n\n", p.sampleEvery, len(r.samples))
	b.WriteString("| line | start | peak | end | 2nd-quarter mean | last-quarter mean | change | bound |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, st := range v.lines {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %+.1f%% | %+.1f%% |\n", st.line.label(), num(st.start), num(st.peak), num(st.end),
			num(st.q2), num(st.q4), 100*st.growth, 100*(st.allowed-1))
	}
	fmt.Fprintf(&b, "\nThe bound is +10%%; for goroutines, descriptors and RSS it widens by the open connections' own rise between the quarters.\n\n![goroutines, descriptors, RSS and open connections over time](%s)\n\n", chart)
	b.WriteString("## Verdict\n\n")
	if len(v.problems) == 0 {
		b.WriteString("PASS: no line grew without bound, no held connection was cut, and every client error is explained by an injected fault.\n")
	}
	for _, pr := range v.problems {
		fmt.Fprintf(&b, "- FAIL: %s\n", pr)
	}
	if nErrs > 0 {
		fmt.Fprintf(&b, "\nUnexplained errors (%d; the first %d):\n\n```\n%s\n```\n", nErrs, len(errs), strings.Join(errs, "\n"))
	}
	return b.String()
}

// label is the line's name with its unit.
func (l soakLine) label() string {
	if l.unit == "" {
		return l.name
	}
	return l.name + " (" + l.unit + ")"
}

// num formats a figure: whole numbers plainly, others to one decimal.
func num(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%.1f", f)
}

// durRange describes the shortest and longest of ds.
func durRange(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none measured"
	}
	return fmt.Sprintf("each after %v to %v", slices.Min(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond))
}
