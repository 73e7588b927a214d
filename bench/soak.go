//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// soakParams size the soak: modest for two cores, far inside a 20,000
// descriptor limit (each held connection costs l4edge two descriptors).
type soakParams struct {
	dur time.Duration
	// heldTerm and heldPass are the WebSockets held over terminated TLS and
	// over passthrough; each sends a message every heldPing.
	heldTerm, heldPass int
	heldPing           time.Duration
	// churnPlain and churnTLS are workers opening one short connection
	// after another, churnGap apart.
	churnPlain, churnTLS int
	churnGap             time.Duration
	// slowloris connections trickle a ClientHello one byte per second.
	slowloris int
	// inspect is the listeners' inspect_timeout.
	inspect time.Duration
	// Faults: a reload every reloadEvery (first at reloadAt), a SIGKILL of
	// one churn backend every killEvery (first at killAt), restarted after
	// killDown.
	reloadAt, reloadEvery time.Duration
	killAt, killEvery     time.Duration
	killDown              time.Duration
	sampleEvery           time.Duration
}

// defaultSoakParams returns the soak's shape for a run of d.
func defaultSoakParams(d time.Duration) soakParams {
	return soakParams{
		dur: d, heldTerm: 150, heldPass: 150, heldPing: 10 * time.Second,
		churnPlain: 3, churnTLS: 1, churnGap: 20 * time.Millisecond,
		slowloris: 30, inspect: 5 * time.Second,
		reloadAt: 15 * time.Second, reloadEvery: 30 * time.Second,
		killAt: 20 * time.Second, killEvery: 60 * time.Second, killDown: 5 * time.Second,
		sampleEvery: 5 * time.Second,
	}
}

// soakMain runs the soak for o.soak and writes its report; it returns the
// exit code (1 when any check failed).
func soakMain(ctx context.Context, o options, stdout io.Writer, log *zap.Logger) int {
	p := defaultSoakParams(o.soak)
	if p.dur < 8*p.sampleEvery {
		log.Error("the soak needs at least 8 samples to compare its quarters", zap.Duration("soak", p.dur), zap.Duration("minimum", 8*p.sampleEvery))
		return exitUsage
	}
	res, err := runSoak(ctx, log, o, p)
	if err != nil {
		log.Error("soak could not run", zap.Error(err))
		return exitFatal
	}
	chart := filepath.Join(filepath.Dir(o.soakOut), "soak.png")
	verdict := res.judge()
	if err := writeChart(chart, res.samples, res.ledger.faults()); err != nil {
		log.Error("soak chart", zap.String("file", chart), zap.Error(err))
		return exitFatal
	}
	doc := soakDocument(res, verdict, filepath.Base(chart))
	if err := os.WriteFile(o.soakOut, []byte(doc), 0o644); err != nil {
		log.Error("write soak report", zap.String("file", o.soakOut), zap.Error(err))
		return exitFatal
	}
	fmt.Fprint(stdout, verdict.summary())
	log.Info("soak report written", zap.String("file", o.soakOut), zap.String("chart", chart))
	if len(verdict.problems) > 0 {
		log.Error("soak failed", zap.Strings("problems", verdict.problems))
		return exitFatal
	}
	return exitOK
}

// soakResult is everything a soak measured.
type soakResult struct {
	p       soakParams
	m       meta
	samples []soakSample
	ledger  *soakLedger
	logs    map[string]int64 // l4edge's log lines by level and message
	elapsed time.Duration
}

// runSoak sets the scene up, drives every load and fault at once for p.dur
// while sampling l4edge, and tears everything down.
func runSoak(ctx context.Context, log *zap.Logger, o options, p soakParams) (*soakResult, error) {
	start := time.Now()
	if err := raiseNoFile(); err != nil {
		log.Warn("cannot raise the descriptor limit", zap.Error(err))
	}
	dir, err := os.MkdirTemp("", "l4edge-soak-")
	if err != nil {
		return nil, fmt.Errorf("create a work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	sc, err := newSoakScene(ctx, log, o, p, dir)
	if err != nil {
		return nil, err
	}
	defer sc.close(log)
	log.Info("soak scene ready", zap.Int("l4edge_pid", sc.l4edge.pid()), zap.Duration("duration", p.dur))

	l := newSoakLedger()
	runCtx, stop := context.WithTimeout(ctx, p.dur)
	defer stop()
	var wg sync.WaitGroup
	held := sc.startHeld(runCtx, l, &wg)
	sc.startChurn(runCtx, l, &wg)
	sc.startSlowloris(runCtx, l, &wg)
	wg.Go(func() { sc.reloads(runCtx, l) })
	wg.Go(func() { sc.kills(runCtx, l) })
	samples := sc.sample(runCtx, l)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("soak interrupted: %w", ctx.Err())
	}
	log.Info("soak load over; closing the held connections")
	if !waitGroupWithin(&wg, 30*time.Second) {
		l.unexplained("drivers", fmt.Errorf("load drivers did not finish within 30 s of the end"))
	}
	held.closeAll(l)
	sc.stopL4edge(l)
	logs, err := sc.logSummary()
	if err != nil {
		l.unexplained("l4edge log", err)
	}
	for k := range logs {
		if strings.HasPrefix(k, "panic") || strings.HasPrefix(k, "fatal") || strings.HasPrefix(k, "dpanic") || strings.HasPrefix(k, "raw") {
			l.unexplained("l4edge log", fmt.Errorf("%d lines of %q; the log ends with:\n%s", logs[k], k, sc.l4edge.tail.String()))
		}
	}
	m := collectMeta(tools{L4edge: sc.bin}, sc.commit)
	m.elapsed = time.Since(start)
	return &soakResult{p: p, m: m, samples: samples, ledger: l, logs: logs, elapsed: time.Since(start)}, nil
}

// waitGroupWithin waits for wg at most d and reports whether it finished.
func waitGroupWithin(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
