//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// failPause is how long a worker waits after a failed operation.
const failPause = 10 * time.Millisecond

// bulkRunner measures download throughput: the backend's source writes as
// fast as it can, streams clients read for the scenario's duration.
func bulkRunner(streams int, useTLS, upload bool) func(context.Context, *scenarioEnv, *liveTarget) (outcome, error) {
	return func(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error) {
		plain, secure := lt.addrs.Source, lt.addrs.TLSSource
		if upload {
			plain, secure = lt.addrs.Sink, lt.addrs.TLSSink
		}
		dial := plainDialer(plain)
		if useTLS {
			dial = tlsDialer(secure, env.tlsCfg)
		}
		conns, err := openConns(ctx, dial, streams, "stream")
		defer closeAll(conns)
		if err != nil {
			return outcome{}, err
		}
		s0, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		end := time.Now().Add(env.p.bulk)
		received := make([]uint64, streams) // or sent, uploading
		move := downloadStream
		if upload {
			move = uploadStream
		}
		t, elapsed := runWorkers(streams, func(w int, t *tally) { move(conns[w], end, &received[w], t) })
		s1, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		if t.failed > 0 {
			return outcome{}, t.firstErr
		}
		var bytes float64
		for _, n := range received {
			bytes += float64(n)
		}
		if bytes == 0 {
			return outcome{}, errors.New("no bytes received")
		}
		return outcome{
			values: map[string]float64{
				"gbps":       bytes * 8 / elapsed.Seconds() / 1e9,
				"cpu_per_gb": (s1.CPU - s0.CPU) / (bytes / 1e9),
			},
			tls: tlsSummary(conns[0]),
		}, nil
	}
}

// downloadStream reads c until end, counting the bytes into n.
func downloadStream(c net.Conn, end time.Time, n *uint64, t *tally) {
	if err := c.SetReadDeadline(end); err != nil {
		t.fail(err)
		return
	}
	buf := make([]byte, 256<<10)
	for range maxOps {
		got, err := c.Read(buf)
		*n += uint64(got)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.fail(fmt.Errorf("stream ended before the deadline: %w", err))
			}
			return
		}
	}
}

// uploadStream writes 128 KiB chunks to c (as iperf3 does) until end,
// counting the bytes the kernel took into n.
func uploadStream(c net.Conn, end time.Time, n *uint64, t *tally) {
	if err := c.SetWriteDeadline(end); err != nil {
		t.fail(err)
		return
	}
	buf := make([]byte, 128<<10)
	for range maxOps {
		sent, err := c.Write(buf)
		*n += uint64(sent)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.fail(fmt.Errorf("stream ended before the deadline: %w", err))
			}
			return
		}
	}
}

// runConnRate measures new connections: each worker connects, echoes 64
// bytes, closes, and starts over, for the scenario's duration.
func runConnRate(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error) {
	dial := plainDialer(lt.addrs.Echo)
	s0, err := lt.sample()
	if err != nil {
		return outcome{}, err
	}
	end := time.Now().Add(env.p.rate)
	t, elapsed := runWorkers(env.p.rateWorkers, func(_ int, t *tally) {
		e := newEchoer()
		for i := 0; i < maxOps && ctx.Err() == nil && time.Now().Before(end); i++ {
			start := time.Now()
			c, err := dial(ctx)
			if err != nil {
				t.fail(err)
				pause(ctx, failPause)
				continue
			}
			err = e.roundTrip(c)
			_ = c.Close()
			if err != nil {
				t.fail(err)
				pause(ctx, failPause)
				continue
			}
			t.lat.record(time.Since(start))
			t.ok++
		}
	})
	s1, err := lt.sample()
	if err != nil {
		return outcome{}, err
	}
	return opOutcome(t, elapsed, (s1.CPU-s0.CPU)*1e6)
}

// pingRunner measures round trips of 64 bytes on persistent connections,
// one per worker.
func pingRunner(workers int) func(context.Context, *scenarioEnv, *liveTarget) (outcome, error) {
	return func(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error) {
		dial := plainDialer(lt.addrs.Echo)
		conns, err := openConns(ctx, dial, workers, "connection")
		defer closeAll(conns)
		if err != nil {
			return outcome{}, err
		}
		end := time.Now().Add(env.p.ping)
		t, elapsed := runWorkers(workers, func(w int, t *tally) {
			e := newEchoer()
			for i := 0; i < maxOps && ctx.Err() == nil && time.Now().Before(end); i++ {
				start := time.Now()
				if err := e.roundTrip(conns[w]); err != nil {
					t.fail(err)
					return
				}
				t.lat.record(time.Since(start))
				t.ok++
			}
		})
		if t.failed > 0 {
			return outcome{}, t.firstErr
		}
		return opOutcome(t, elapsed, 0)
	}
}

// runHandshakes measures full TLS 1.3 handshakes: each worker connects,
// handshakes (no resumption), echoes 64 bytes so the proxy reaches the
// backend, and closes. Latency is that of the handshake alone.
func runHandshakes(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error) {
	dial := tlsDialer(lt.addrs.TLSEcho, env.tlsCfg)
	s0, err := lt.sample()
	if err != nil {
		return outcome{}, err
	}
	end := time.Now().Add(env.p.handshake)
	summaries := make([]string, env.p.hsWorkers)
	t, elapsed := runWorkers(env.p.hsWorkers, func(w int, t *tally) {
		e := newEchoer()
		for i := 0; i < maxOps && ctx.Err() == nil && time.Now().Before(end); i++ {
			start := time.Now()
			c, err := dial(ctx)
			if err != nil {
				t.fail(err)
				pause(ctx, failPause)
				continue
			}
			hs := time.Since(start)
			if summaries[w] == "" {
				summaries[w] = tlsSummary(c)
			}
			err = e.roundTrip(c)
			_ = c.Close()
			if err != nil {
				t.fail(err)
				pause(ctx, failPause)
				continue
			}
			t.lat.record(hs)
			t.ok++
		}
	})
	s1, err := lt.sample()
	if err != nil {
		return outcome{}, err
	}
	o, err := opOutcome(t, elapsed, (s1.CPU-s0.CPU)*1e3)
	o.tls = summaries[0]
	return o, err
}

// opOutcome turns a tally of operations into rate, p50, p99 and, when
// cpu (in the metric's unit) is given, CPU per operation.
func opOutcome(t *tally, elapsed time.Duration, cpu float64) (outcome, error) {
	if t.ok == 0 {
		return outcome{}, fmt.Errorf("no operation succeeded (%d failed; first: %v)", t.failed, t.firstErr)
	}
	return outcome{
		values: map[string]float64{
			"rate":       float64(t.ok) / elapsed.Seconds(),
			"p50":        t.lat.quantileMicros(0.50),
			"p99":        t.lat.quantileMicros(0.99),
			"p999":       t.lat.quantileMicros(0.999),
			"cpu_per_op": cpu / float64(t.ok),
		},
		failed:   t.failed,
		firstErr: t.firstErr,
	}, nil
}

// idleRunner opens n connections (each proves itself with one echo), lets
// them sit, measures the proxy, then checks each is still alive with a
// second echo. Per-connection figures are (held - baseline) / held.
func idleRunner(n int, useTLS bool) func(context.Context, *scenarioEnv, *liveTarget) (outcome, error) {
	return func(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error) {
		dial := plainDialer(lt.addrs.Echo)
		if useTLS {
			dial = tlsDialer(lt.addrs.TLSEcho, env.tlsCfg)
		}
		s0, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		conns := make([]net.Conn, n)
		defer closeAll(conns)
		var next atomic.Int64
		openEnd := time.Now().Add(env.p.open)
		opened, _ := runWorkers(32, func(_ int, t *tally) {
			e := newEchoer()
			for ctx.Err() == nil && time.Now().Before(openEnd) {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := dial(ctx)
				if err != nil {
					t.fail(err)
					pause(ctx, failPause)
					continue
				}
				if err := e.roundTrip(c); err != nil {
					_ = c.Close()
					t.fail(err)
					continue
				}
				_ = c.SetDeadline(time.Time{})
				conns[i] = c
				t.ok++
			}
		})
		pause(ctx, env.p.settle)
		s1, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		var idx atomic.Int64
		alive, _ := runWorkers(32, func(_ int, t *tally) {
			e := newEchoer()
			for ctx.Err() == nil {
				i := int(idx.Add(1)) - 1
				if i >= n {
					return
				}
				if conns[i] == nil {
					continue
				}
				if err := e.roundTrip(conns[i]); err != nil {
					t.fail(fmt.Errorf("connection no longer alive: %w", err))
					continue
				}
				t.ok++
			}
		})
		held := float64(alive.ok)
		if held == 0 {
			return outcome{}, fmt.Errorf("no connection held (%d failed to open; first: %v)", opened.failed, opened.firstErr)
		}
		o := outcome{
			values: map[string]float64{
				"rss_per_conn": (s1.RSS - s0.RSS) / held,
				"fds_per_conn": (s1.FDs - s0.FDs) / held,
				"held":         held,
			},
			failed:   opened.failed + alive.failed,
			firstErr: opened.firstErr,
		}
		if o.firstErr == nil {
			o.firstErr = alive.firstErr
		}
		for _, c := range conns {
			if c != nil {
				o.tls = tlsSummary(c)
				break
			}
		}
		return o, nil
	}
}

// openConns dials n connections one after another. On an error it returns
// those already open with it, for the caller's closeAll.
func openConns(ctx context.Context, dial dialer, n int, what string) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := dial(ctx)
		if err != nil {
			return conns, fmt.Errorf("open %s %d/%d: %w", what, i+1, n, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// closeAll closes every non-nil connection.
func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}
