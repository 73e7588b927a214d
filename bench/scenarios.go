//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
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
	// wssConns WebSockets exchange a message a second for wssTime.
	wssConns int
	wssTime  time.Duration
	// stormConns WebSockets reconnect at once after their backend restarts.
	stormConns int
	// warm is how long connection-rate load runs on direct, unrecorded,
	// before the first measurement (warmUp).
	warm time.Duration
}

// fullParams are the figures make bench measures.
func fullParams() params {
	return params{
		bulk: 5 * time.Second, rate: 10 * time.Second, ping: 5 * time.Second, handshake: 5 * time.Second,
		idle: 3000, idleLarge: 9000, tlsIdle: 3000,
		rateWorkers: 32, pingWorkers: 32, hsWorkers: 32,
		settle: time.Second, open: 90 * time.Second,
		runs:     3,
		wssConns: 8000, wssTime: 30 * time.Second, stormConns: 5000,
		warm: 30 * time.Second,
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
		runs:     1,
		wssConns: 50, wssTime: 2 * time.Second, stormConns: 50,
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
		{key: "p999", label: "p99.9 µs"},
		{key: "cpu_per_op", label: "proxy CPU µs/conn", proxyOnly: true, prec: 1},
	}
	pingMetrics = []metric{
		{key: "rate", label: "round trips/s", higher: true},
		{key: "p50", label: "p50 µs"},
		{key: "p99", label: "p99 µs"},
		{key: "p999", label: "p99.9 µs"},
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
		{key: "p999", label: "handshake p99.9 µs"},
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
	// wsClient dials WebSockets with tlsCfg.
	wsClient *http.Client
	// restartWS restarts the backend's WebSocket services (runStorm).
	restartWS func() error
}

// scenario is one measurement, run against each target in turn.
type scenario struct {
	name, label string
	metrics     []metric
	run         func(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error)
}

// memoryScenarios are measured idleRunsScale times as often as the others.
// A Go proxy's RSS growth depends on whether a collection happened to run
// while the connections opened: l4edge's bytes per connection at 3000
// connections range from 500 to 840 between runs of one binary, so the
// median of three moves by a third. Each run takes a second or two.
var memoryScenarios = []string{"idle", "idle-large", "tls-idle"}

const idleRunsScale = 3

// runsOf is how many times each target is measured in the named scenario.
func runsOf(name string, p params) int {
	if slices.Contains(memoryScenarios, name) {
		return idleRunsScale * p.runs
	}
	return p.runs
}

// scenarios lists every scenario in table order, labelled with p's figures.
func scenarios(p params) []scenario {
	secs := func(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }
	return []scenario{
		{"bulk-1", "download, 1 stream, " + secs(p.bulk), bulkMetrics, bulkRunner(1, false, false)},
		{"bulk-8", "download, 8 streams, " + secs(p.bulk), bulkMetrics, bulkRunner(8, false, false)},
		{"upload-1", "upload, 1 stream, " + secs(p.bulk), bulkMetrics, bulkRunner(1, false, true)},
		{"upload-8", "upload, 8 streams, " + secs(p.bulk), bulkMetrics, bulkRunner(8, false, true)},
		{"iperf3-up-1", "iperf3 upload, 1 stream, " + secs(p.bulk), bulkMetrics, iperfRunner(1, false)},
		{"iperf3-up-8", "iperf3 upload, 8 streams, " + secs(p.bulk), bulkMetrics, iperfRunner(8, false)},
		{"iperf3-down-1", "iperf3 -R download, 1 stream, " + secs(p.bulk), bulkMetrics, iperfRunner(1, true)},
		{"iperf3-down-8", "iperf3 -R download, 8 streams, " + secs(p.bulk), bulkMetrics, iperfRunner(8, true)},
		{"connrate", fmt.Sprintf("connect+64B echo+close, %d workers, %s", p.rateWorkers, secs(p.rate)), rateMetrics, runConnRate},
		{"pingpong-1", "ping-pong 64B, 1 conn, " + secs(p.ping), pingMetrics, pingRunner(1)},
		{"pingpong-32", fmt.Sprintf("ping-pong 64B, %d conns, %s", p.pingWorkers, secs(p.ping)), pingMetrics, pingRunner(p.pingWorkers)},
		{"idle", fmt.Sprintf("idle, %d conns", p.idle), idleMetrics, idleRunner(p.idle, false)},
		{"idle-large", fmt.Sprintf("idle, %d conns", p.idleLarge), idleMetrics, idleRunner(p.idleLarge, false)},
		{"tls-handshake", fmt.Sprintf("TLS 1.3 full handshake+echo, %d workers, %s", p.hsWorkers, secs(p.handshake)), handshakeMetrics, runHandshakes},
		{"tls-bulk-1", "TLS download, 1 stream, " + secs(p.bulk), bulkMetrics, bulkRunner(1, true, false)},
		{"tls-bulk-8", "TLS download, 8 streams, " + secs(p.bulk), bulkMetrics, bulkRunner(8, true, false)},
		{"tls-upload-1", "TLS upload, 1 stream, " + secs(p.bulk), bulkMetrics, bulkRunner(1, true, true)},
		{"tls-upload-8", "TLS upload, 8 streams, " + secs(p.bulk), bulkMetrics, bulkRunner(8, true, true)},
		{"tls-idle", fmt.Sprintf("TLS idle, %d conns", p.tlsIdle), idleMetrics, idleRunner(p.tlsIdle, true)},
		{"wss", fmt.Sprintf("wss, %d WebSockets, 64 B each way every second, %s", p.wssConns, secs(p.wssTime)), wssMetrics, wssRunner(false)},
		{"storm", fmt.Sprintf("reconnect storm, %d wss WebSockets after a backend restart", p.stormConns), stormMetrics, runStorm},
		{"wss-passthrough", fmt.Sprintf("wss through passthrough (TLS at the backend), %d WebSockets, %s", p.wssConns, secs(p.wssTime)), wssMetrics, wssRunner(true)},
	}
}

// scenarioNames lists every scenario's name in table order.
func scenarioNames() []string {
	var out []string
	for _, s := range scenarios(smokeParams()) {
		out = append(out, s.name)
	}
	return out
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
