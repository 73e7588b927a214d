//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The product's own workload: many long-lived WebSockets over wss, each
// quiet most of the time. Every connection sends a 64-byte message and
// reads its echo once a second, the sends spread evenly over the second.

// wssShards bounds the latency histograms of the wss workload (a
// histogram per connection would cost 30 KB each).
const wssShards = 64

// wssMetrics are the wss workload's figures.
var wssMetrics = []metric{
	{key: "rate", label: "messages/s", higher: true},
	{key: "p50", label: "round trip p50 µs"},
	{key: "p99", label: "round trip p99 µs"},
	{key: "p999", label: "round trip p99.9 µs"},
	{key: "cpu_per_msg", label: "proxy CPU µs/message", proxyOnly: true, prec: 1},
	{key: "rss_per_conn", label: "proxy RSS bytes/conn", proxyOnly: true},
	{key: "failed", label: "failed messages", noRatio: true},
}

// wssRunner holds env.p.wssConns WebSockets for env.p.wssTime: through
// the proxy's terminating listener, or its passthrough one to the
// backend's own TLS.
func wssRunner(passthrough bool) func(context.Context, *scenarioEnv, *liveTarget) (outcome, error) {
	return func(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error) {
		addr := lt.addrs.WSS
		if passthrough {
			addr = lt.addrs.WSSPass
		}
		s0, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		conns, err := openWebSockets(ctx, addr, env.tlsCfg, env.p.wssConns, env.p.open)
		defer func() {
			for _, c := range conns {
				c.CloseNow()
			}
		}()
		if err != nil {
			return outcome{}, err
		}
		pause(ctx, env.p.settle)
		s1, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		t := exchangeEverySecond(ctx, conns, env.p.wssTime)
		s2, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		if t.ok == 0 {
			return outcome{}, fmt.Errorf("no message came back (%d failed; first: %v)", t.failed, t.firstErr)
		}
		n := float64(len(conns))
		return outcome{
			values: map[string]float64{
				"rate":         float64(t.ok) / env.p.wssTime.Seconds(),
				"p50":          t.lat.quantileMicros(0.50),
				"p99":          t.lat.quantileMicros(0.99),
				"p999":         t.lat.quantileMicros(0.999),
				"cpu_per_msg":  (s2.CPU - s1.CPU) * 1e6 / float64(t.ok),
				"rss_per_conn": (s1.RSS - s0.RSS) / n,
				"failed":       float64(t.failed),
			},
			failed: t.failed, firstErr: t.firstErr,
		}, nil
	}
}

// openWebSockets opens n WebSockets to wss://addr/, 64 handshakes at a
// time, within limit.
func openWebSockets(ctx context.Context, addr string, cfg *tls.Config, n int, limit time.Duration) ([]*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := wsClient(cfg)
	conns := make([]*websocket.Conn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conns[i], errs[i] = dialWSWith(ctx, addr, client)
		})
	}
	wg.Wait()
	var open []*websocket.Conn
	for i, c := range conns {
		if errs[i] != nil {
			return open, fmt.Errorf("open WebSocket %d/%d to %s: %w", i+1, n, addr, errs[i])
		}
		open = append(open, c)
	}
	return open, nil
}

// wsClient is the HTTP client whose transport dials WebSockets over TLS.
func wsClient(cfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   cfg,
		DialContext:       (&net.Dialer{Timeout: opTimeout}).DialContext,
		ForceAttemptHTTP2: false,
	}}
}

// dialWSWith opens one WebSocket to wss://addr/ within opTimeout.
func dialWSWith(ctx context.Context, addr string, client *http.Client) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+addr+"/", &websocket.DialOptions{HTTPClient: client})
	return c, err
}

// dialWS is dialWSWith with the environment's TLS configuration.
func dialWS(ctx context.Context, addr string, env *scenarioEnv) (*websocket.Conn, error) {
	return dialWSWith(ctx, addr, env.wsClient)
}

// exchangeEverySecond has every connection send a 64-byte message and
// read its echo once a second for d, connection i starting i/len(conns)
// of a second in, and returns the round trips.
func exchangeEverySecond(ctx context.Context, conns []*websocket.Conn, d time.Duration) *tally {
	shards := make([]struct {
		sync.Mutex
		t tally
	}, wssShards)
	start := time.Now().Add(100 * time.Millisecond)
	end := start.Add(d)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			sh := &shards[i%wssShards]
			msg := bytes.Repeat([]byte{byte('a' + i%26)}, msgSize)
			next := start.Add(time.Duration(i) * time.Second / time.Duration(len(conns)))
			for k := 0; k < maxOps && ctx.Err() == nil && next.Before(end); k++ {
				pause(ctx, time.Until(next))
				rtt, err := wsRoundTrip(ctx, c, msg)
				sh.Lock()
				if err != nil {
					sh.t.fail(err)
				} else {
					sh.t.ok++
					sh.t.lat.record(rtt)
				}
				sh.Unlock()
				if err != nil {
					return // the connection is gone
				}
				next = next.Add(time.Second)
			}
		})
	}
	wg.Wait()
	total := &tally{}
	for i := range shards {
		total.merge(&shards[i].t)
	}
	return total
}

// wsRoundTrip writes msg and reads its echo within opTimeout.
func wsRoundTrip(ctx context.Context, c *websocket.Conn, msg []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	sent := time.Now()
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		return 0, fmt.Errorf("read echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return 0, errors.New("echo differs")
	}
	return time.Since(sent), nil
}
