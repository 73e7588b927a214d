//go:build linux

package main

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// keptErrors is how many unexplained errors the ledger keeps verbatim.
const keptErrors = 20

// killSlack widens each kill window: a connection that began just after the
// SIGKILL was sent may still have reached the dying backend.
const killSlack = 250 * time.Millisecond

// soakLedger records what every driver saw: counters, the windows in which
// a backend was being killed, and errors, each either explained by an
// injected fault or not. It is safe for concurrent use.
type soakLedger struct {
	mu        sync.Mutex
	counts    map[string]int64
	explained map[string]int64
	errs      []string
	nErrs     int
	kills     []time.Time
	events    []soakEvent
	durations map[string][]time.Duration
	soakStart time.Time
}

// newSoakLedger returns an empty ledger whose clock starts now.
func newSoakLedger() *soakLedger {
	return &soakLedger{counts: map[string]int64{}, explained: map[string]int64{},
		durations: map[string][]time.Duration{}, soakStart: time.Now()}
}

// add adds n to the counter name.
func (l *soakLedger) add(name string, n int64) {
	l.mu.Lock()
	l.counts[name] += n
	l.mu.Unlock()
}

// count returns the counter name.
func (l *soakLedger) count(name string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[name]
}

// duration records one observed duration under name (e.g. how long a
// slowloris connection was held).
func (l *soakLedger) duration(name string, d time.Duration) {
	l.mu.Lock()
	l.durations[name] = append(l.durations[name], d)
	l.mu.Unlock()
}

// unexplained records an error that no injected fault explains.
func (l *soakLedger) unexplained(what string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nErrs++
	if len(l.errs) < keptErrors {
		l.errs = append(l.errs, fmt.Sprintf("%6.1fs %s: %v", time.Since(l.soakStart).Seconds(), what, err))
	}
}

// explain records an error that an injected fault explains, by reason.
func (l *soakLedger) explain(reason string) {
	l.mu.Lock()
	l.explained[reason]++
	l.mu.Unlock()
}

// soakEvent is an injected fault, for the chart.
type soakEvent struct {
	At   time.Duration // since the soak began
	Kind string        // "kill" or "reload"
}

// event records a fault of kind now.
func (l *soakLedger) event(kind string) {
	l.mu.Lock()
	l.events = append(l.events, soakEvent{At: time.Since(l.soakStart), Kind: kind})
	l.mu.Unlock()
}

// faults returns the recorded faults in order.
func (l *soakLedger) faults() []soakEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// killing records that a SIGKILL is about to be sent.
func (l *soakLedger) killing(at time.Time) {
	l.mu.Lock()
	l.kills = append(l.kills, at)
	l.events = append(l.events, soakEvent{At: at.Sub(l.soakStart), Kind: "kill"})
	l.mu.Unlock()
}

// killedDuring reports whether a SIGKILL was sent while a connection that
// began at start and failed at end was open.
func (l *soakLedger) killedDuring(start, end time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.kills {
		if !start.After(k.Add(killSlack)) && !k.After(end) {
			return true
		}
	}
	return false
}

// snapshot returns copies of the counters, explained errors, kept
// unexplained errors and their total, and the recorded durations.
func (l *soakLedger) snapshot() (counts, explained map[string]int64, errs []string, nErrs int, durs map[string][]time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	durs = map[string][]time.Duration{}
	for k, v := range l.durations {
		durs[k] = slices.Clone(v)
	}
	return maps.Clone(l.counts), maps.Clone(l.explained), slices.Clone(l.errs), l.nErrs, durs
}
