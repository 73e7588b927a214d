//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"
)

// params sizes a benchmark run; fullParams and smokeParams are the two sets.
type params struct {
	// Durations of the timed scenarios.
	bulk, rate, ping, handshake time.Duration
	// Connections held by the idle scenarios.
	idle, idleLarge, tlsIdle int
	// Workers of the connection-rate, ping-pong and handshake scenarios.
	rateWorkers, pingWorkers, hsWorkers int
	// settle is the pause before idle connections are measured; open bounds
	// the time to open them.
	settle, open time.Duration
	// runs is how many times each cell is measured.
	runs int
}

// fullParams are the figures of issue 7.
func fullParams() params {
	return params{
		bulk: 5 * time.Second, rate: 10 * time.Second, ping: 5 * time.Second, handshake: 5 * time.Second,
		idle: 3000, idleLarge: 9000, tlsIdle: 3000,
		rateWorkers: 32, pingWorkers: 32, hsWorkers: 32,
		settle: time.Second, open: 90 * time.Second,
		runs: 2,
	}
}

// smokeParams keep every scenario to about a second, so the harness is
// exercised by the tests without loading the machine.
func smokeParams() params {
	return params{
		bulk: 400 * time.Millisecond, rate: 400 * time.Millisecond, ping: 300 * time.Millisecond, handshake: 400 * time.Millisecond,
		idle: 200, idleLarge: 400, tlsIdle: 200,
		rateWorkers: 32, pingWorkers: 32, hsWorkers: 32,
		settle: 100 * time.Millisecond, open: 20 * time.Second,
		runs: 1,
	}
}

// metric is one row of the table.
type metric struct {
	key, label string
	// higher reports whether a larger value is better.
	higher bool
	// proxyOnly marks proxy resource figures: zero for direct by definition.
	proxyOnly bool
	// noRatio suppresses the ratio columns.
	noRatio bool
	// prec is the number of decimals shown.
	prec int
}

// Metric sets shared by several scenarios.
var (
	bulkMetrics = []metric{
		{key: "gbps", label: "Gbit/s", higher: true, prec: 2},
		{key: "cpu_per_gb", label: "proxy CPU s/GB", proxyOnly: true, prec: 3},
	}
	rateMetrics = []metric{
		{key: "rate", label: "conns/s", higher: true},
		{key: "p50", label: "p50 µs"},
		{key: "p99", label: "p99 µs"},
		{key: "cpu_per_op", label: "proxy CPU µs/conn", proxyOnly: true, prec: 1},
	}
	pingMetrics = []metric{
		{key: "rate", label: "round trips/s", higher: true},
		{key: "p50", label: "p50 µs"},
		{key: "p99", label: "p99 µs"},
	}
	idleMetrics = []metric{
		{key: "rss_per_conn", label: "proxy RSS bytes/conn", proxyOnly: true},
		{key: "fds_per_conn", label: "proxy fds/conn", proxyOnly: true, prec: 2},
		{key: "held", label: "connections held", higher: true, noRatio: true},
	}
	handshakeMetrics = []metric{
		{key: "rate", label: "handshakes/s", higher: true},
		{key: "p50", label: "handshake p50 µs"},
		{key: "p99", label: "handshake p99 µs"},
		{key: "cpu_per_op", label: "proxy CPU ms/handshake", proxyOnly: true, prec: 3},
	}
)

// outcome is what one measurement of one target produced.
type outcome struct {
	values map[string]float64
	// failed counts operations that failed without ending the measurement.
	failed   uint64
	firstErr error
	// tls describes the negotiated TLS parameters, if any.
	tls string
}

// scenarioEnv is what every scenario needs besides the target.
type scenarioEnv struct {
	p      params
	tlsCfg *tls.Config
}

// scenario is one measurement, run against each target in turn.
type scenario struct {
	name, label string
	metrics     []metric
	run         func(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error)
}

// scenarios lists every scenario in table order, labelled with p's figures.
func scenarios(p params) []scenario {
	secs := func(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }
	return []scenario{
		{"bulk-1", "bulk, 1 stream, " + secs(p.bulk), bulkMetrics, bulkRunner(1, false)},
		{"bulk-8", "bulk, 8 streams, " + secs(p.bulk), bulkMetrics, bulkRunner(8, false)},
		{"connrate", fmt.Sprintf("connect+64B echo+close, %d workers, %s", p.rateWorkers, secs(p.rate)), rateMetrics, runConnRate},
		{"pingpong-1", "ping-pong 64B, 1 conn, " + secs(p.ping), pingMetrics, pingRunner(1)},
		{"pingpong-32", fmt.Sprintf("ping-pong 64B, %d conns, %s", p.pingWorkers, secs(p.ping)), pingMetrics, pingRunner(p.pingWorkers)},
		{"idle", fmt.Sprintf("idle, %d conns", p.idle), idleMetrics, idleRunner(p.idle, false)},
		{"idle-large", fmt.Sprintf("idle, %d conns", p.idleLarge), idleMetrics, idleRunner(p.idleLarge, false)},
		{"tls-handshake", fmt.Sprintf("TLS 1.3 full handshake+echo, %d workers, %s", p.hsWorkers, secs(p.handshake)), handshakeMetrics, runHandshakes},
		{"tls-bulk-1", "TLS bulk, 1 stream, " + secs(p.bulk), bulkMetrics, bulkRunner(1, true)},
		{"tls-bulk-8", "TLS bulk, 8 streams, " + secs(p.bulk), bulkMetrics, bulkRunner(8, true)},
		{"tls-idle", fmt.Sprintf("TLS idle, %d conns", p.tlsIdle), idleMetrics, idleRunner(p.tlsIdle, true)},
	}
}

// selectScenarios returns the scenarios named in the comma-separated list
// (all when empty), in table order.
func selectScenarios(all []scenario, names []string) ([]scenario, error) {
	if len(names) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []scenario
	for _, s := range all {
		if want[s.name] {
			out = append(out, s)
			delete(want, s.name)
		}
	}
	for n := range want {
		var known []string
		for _, s := range all {
			known = append(known, s.name)
		}
		return nil, fmt.Errorf("-scenarios: unknown scenario %q (known: %v)", n, known)
	}
	return out, nil
}
