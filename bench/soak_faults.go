//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
)

// every calls fn at first, first+period, ... after its start (a slow fn
// delays only its own call, not the schedule) until ctx ends.
func every(ctx context.Context, first, period time.Duration, fn func(n int)) {
	t0 := time.Now()
	timer := time.NewTimer(first)
	defer timer.Stop()
	for n := 0; n < maxOps; n++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		fn(n)
		timer.Reset(time.Until(t0.Add(first + time.Duration(n+1)*period)))
	}
}

// reloads toggles the spare listener in the file and sends SIGHUP every
// reloadEvery. Each reload must be counted as a success within 5 s and take
// effect (the spare listener accepts, or stops accepting, within 3 s).
func (sc *soakScene) reloads(ctx context.Context, l *soakLedger) {
	every(ctx, sc.p.reloadAt, sc.p.reloadEvery, func(n int) {
		on := n%2 == 0
		sc.conf.Spare = ""
		if on {
			sc.conf.Spare = sc.spare
		}
		if err := writeConf(sc.confPath, soakConf, sc.conf); err != nil {
			l.unexplained("reload", err)
			return
		}
		before, err := sc.reloadCounts()
		if err != nil {
			l.unexplained("reload", err)
			return
		}
		l.event("reload")
		if err := sc.l4edge.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			l.unexplained("reload", fmt.Errorf("SIGHUP l4edge: %w", err))
			return
		}
		if err := sc.awaitReload(before, on); err != nil {
			l.unexplained("reload", err)
			return
		}
		l.add("reloads", 1)
	})
}

// awaitReload waits for one more successful reload and the spare listener
// in its new state.
func (sc *soakScene) awaitReload(before [2]float64, spareOn bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := sc.reloadCounts()
		if err != nil {
			return err
		}
		if now[1] > before[1] {
			return fmt.Errorf("l4edge refused the reloaded file; its output ends with:\n%s", sc.l4edge.tail.String())
		}
		if now[0] > before[0] {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no reload counted within 5 s of SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(3 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", sc.spare, time.Second)
		if err == nil {
			_ = c.Close()
		}
		if (err == nil) == spareOn {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after the reload the spare listener %s should accept: %v, dial: %v", sc.spare, spareOn, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reloadCounts returns l4edge_config_reloads_total for success and failure.
func (sc *soakScene) reloadCounts() ([2]float64, error) {
	fams, err := scrape(sc.admin, sc.metricsURL)
	if err != nil {
		return [2]float64{}, err
	}
	return [2]float64{
		metricSum(fams, "l4edge_config_reloads_total", map[string]string{"result": "success"}),
		metricSum(fams, "l4edge_config_reloads_total", map[string]string{"result": "failure"}),
	}, nil
}

// kills SIGKILLs the churn pool's second backend every killEvery and
// restarts it on the same address killDown later.
func (sc *soakScene) kills(ctx context.Context, l *soakLedger) {
	every(ctx, sc.p.killAt, sc.p.killEvery, func(int) {
		l.killing(time.Now())
		if err := sc.killBackend(killedIdx); err != nil {
			l.unexplained("kill", err)
			return
		}
		l.add("kills", 1)
		// Restart even when the soak is ending, so that teardown is uniform.
		time.Sleep(sc.p.killDown)
		if err := sc.startBackend(context.Background(), killedIdx); err != nil {
			l.unexplained("restart", err)
			return
		}
		l.add("restarts", 1)
	})
}
