//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The reconnect storm: env.p.stormConns WebSockets over wss, all dropped at
// once when their backend restarts (it refuses connections for wsDowntime),
// reconnect with a capped exponential back-off and echo once.

// stormLimit bounds the wait for every connection to be back.
const stormLimit = 60 * time.Second

// stormMetrics are the storm's figures.
var stormMetrics = []metric{
	{key: "recover_ms", label: "ms until all echoed again"},
	{key: "handshake_failures", label: "failed reconnect attempts", noRatio: true},
	{key: "peak_rss_mb", label: "proxy peak RSS MB", proxyOnly: true, prec: 1},
	{key: "lost", label: "connections not back", noRatio: true},
}

// runStorm measures one reconnect storm through the target's wss listener.
func runStorm(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error) {
	n := env.p.stormConns
	conns, err := openWebSockets(ctx, lt.addrs.WSS, env.tlsCfg, n, env.p.open)
	var mu sync.Mutex // guards conns: reconnects replace their entry
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	if err != nil {
		return outcome{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, stormLimit)
	defer cancel()
	var failures, back atomic.Int64
	var restarted atomic.Int64 // unix nanos of the restart
	var last atomic.Int64      // nanos from the restart to the last echo
	var firstLost atomic.Pointer[error]
	lose := func(err error) { firstLost.CompareAndSwap(nil, &err) }
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			mu.Lock()
			c := conns[i]
			mu.Unlock()
			if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
				lose(fmt.Errorf("connection %d was not dropped by the restart within %s", i, stormLimit))
				return
			}
			c.CloseNow() // dropped: its descriptor goes now, not at the end
			nc, err := reconnect(ctx, lt.addrs.WSS, env, &failures)
			if err != nil {
				lose(fmt.Errorf("connection %d: %w", i, err))
				return
			}
			mu.Lock()
			conns[i] = nc
			mu.Unlock()
			if _, err := wsRoundTrip(ctx, nc, []byte("back after the storm.............................................")); err != nil {
				failures.Add(1)
				lose(fmt.Errorf("connection %d: echo after reconnecting: %w", i, err))
				return
			}
			back.Add(1)
			took := time.Now().UnixNano() - restarted.Load()
			for old := last.Load(); took > old && !last.CompareAndSwap(old, took); old = last.Load() {
			}
		})
	}
	s0, err := lt.sample()
	if err != nil {
		return outcome{}, err
	}
	peak := s0.RSS
	restarted.Store(time.Now().UnixNano())
	if err := env.restartWS(); err != nil {
		return outcome{}, fmt.Errorf("restart the backend's WebSockets: %w", err)
	}
	allBack := make(chan struct{})
	go func() { wg.Wait(); close(allBack) }()
	for tick := time.NewTicker(100 * time.Millisecond); ; {
		select {
		case <-allBack:
		case <-tick.C:
			if s, err := lt.sample(); err == nil {
				peak = max(peak, s.RSS)
			}
			continue
		}
		tick.Stop()
		break
	}
	lost := int64(n) - back.Load()
	if back.Load() == 0 {
		return outcome{}, fmt.Errorf("no WebSocket came back within %s (%d failed attempts)", stormLimit, failures.Load())
	}
	o := outcome{values: map[string]float64{
		"recover_ms":         float64(last.Load()) / 1e6,
		"handshake_failures": float64(failures.Load()),
		"peak_rss_mb":        peak / (1 << 20),
		"lost":               float64(lost),
	}, failed: uint64(lost)}
	if p := firstLost.Load(); p != nil {
		o.firstErr = *p
	}
	return o, nil
}

// reconnect dials wss://addr/ until it works or ctx ends, backing off from
// 50 ms doubling to 1 s with jitter after each failure, which it counts.
// When ctx ends first, the error names the last failed dial.
func reconnect(ctx context.Context, addr string, env *scenarioEnv, failures *atomic.Int64) (*websocket.Conn, error) {
	backoff := 50 * time.Millisecond
	var last error
	for ctx.Err() == nil {
		c, err := dialWS(ctx, addr, env)
		if err == nil {
			return c, nil
		}
		last = err
		failures.Add(1)
		pause(ctx, backoff/2+rand.N(backoff))
		backoff = min(2*backoff, time.Second)
	}
	if last == nil {
		last = ctx.Err()
	}
	return nil, fmt.Errorf("not reconnected within %s: last attempt: %w", stormLimit, last)
}
