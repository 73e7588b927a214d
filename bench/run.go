//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
)

// run prepares everything (certificate, proxies, l4edge binary, backend)
// and measures every scenario on every target, alternating the order of
// the targets from one run to the next.
func run(ctx context.Context, log *zap.Logger, o options, p params, scens []scenario) (*results, meta, error) {
	start := time.Now()
	if err := raiseNoFile(); err != nil {
		log.Warn("cannot raise the descriptor limit; the large idle scenarios may fall short", zap.Error(err))
	}
	dir, err := os.MkdirTemp("", "l4edge-bench-")
	if err != nil {
		return nil, meta{}, fmt.Errorf("create a work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	certs, err := writeCert(dir)
	if err != nil {
		return nil, meta{}, err
	}

	want := map[string]bool{}
	for _, t := range o.only {
		want[t] = true
	}
	tl := findProxies(ctx, log, want, o.install)
	var targets, missing []string
	for _, t := range allTargets {
		switch {
		case !want[t]:
		case t == targetHAProxy && tl.HAProxy == "":
			missing = append(missing, "haproxy (not installed)")
		case t == targetNginx && tl.Nginx == "":
			missing = append(missing, "nginx with the stream module (not installed)")
		default:
			targets = append(targets, t)
		}
	}
	for _, m := range missing {
		log.Warn("NOT MEASURED: " + m)
	}

	commit := "unknown"
	if want[targetL4edge] || want[targetL4edgeNoIdle] {
		if tl.L4edge, commit, err = l4edgeBinary(ctx, log, o.l4edge, dir); err != nil {
			return nil, meta{}, err
		}
	}
	if want[targetL4edgeBaseline] {
		if tl.L4edgeBaseline, err = baselineBinary(o.baseline); err != nil {
			return nil, meta{}, err
		}
	}

	self, err := os.Executable()
	if err != nil {
		return nil, meta{}, fmt.Errorf("find the harness binary to start the backend: %w", err)
	}
	backend, err := startBackend(self, certs)
	if err != nil {
		return nil, meta{}, err
	}
	defer func() {
		if err := backend.stop(); err != nil {
			log.Warn("stop backend", zap.Error(err))
		}
	}()
	log.Info("backend ready", zap.Int("pid", backend.p.pid()), zap.Any("addresses", backend.addrs))

	st := &starter{dir: dir, tools: tl, backend: backend.addrs, certs: certs}
	tlsCfg := clientTLSConfig(certs.Pool)
	env := &scenarioEnv{p: p, tlsCfg: tlsCfg, wsClient: wsClient(tlsCfg), restartWS: backend.restartWS}
	warmUp(ctx, log, env, backend.addrs)
	res := newResults(targets, scens)
	shown := map[string]bool{} // targets whose output was logged once
	for _, s := range scens {
		for i := range runsOf(s.name, p) {
			order := slices.Clone(targets)
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, t := range order {
				if ctx.Err() != nil {
					break
				}
				if err := backend.p.exitErr(); err != nil {
					return nil, meta{}, err
				}
				out, output, err := measure(ctx, st, env, s, t)
				res.add(s.name, t, out, err)
				if output != "" && !shown[t] {
					shown[t] = true
					log.Warn("the proxy wrote output (shown once per target)", zap.String("target", t), zap.String("output", output))
				}
				fields := []zap.Field{zap.String("scenario", s.name), zap.String("target", t), zap.Int("run", i+1)}
				if err != nil {
					log.Error("run failed", append(fields, zap.Error(err))...)
					continue
				}
				log.Info("measured", append(fields, zap.Any("values", out.values), zap.Uint64("failed_ops", out.failed))...)
			}
		}
	}
	m := collectMeta(tl, commit)
	m.p, m.missing, m.elapsed = p, missing, time.Since(start)
	return res, m, nil
}

// measure starts a fresh target, runs one scenario on it and stops it. It
// also returns what the proxy wrote to its standard error.
func measure(ctx context.Context, st *starter, env *scenarioEnv, s scenario, t string) (outcome, string, error) {
	lt, err := st.start(ctx, t)
	if err != nil {
		return outcome{}, "", err
	}
	out, err := s.run(ctx, env, lt)
	if err == nil {
		err = lt.check()
	}
	if stopErr := lt.stop(); err == nil && stopErr != nil {
		err = stopErr
	}
	var output string
	if lt.proc != nil {
		output = lt.proc.tail.String()
	}
	return out, output, err
}

// l4edgeBinary returns the prebuilt binary given with -l4edge, or builds
// ./cmd/l4edge into dir; and the commit it stands for.
func l4edgeBinary(ctx context.Context, log *zap.Logger, prebuilt, dir string) (string, string, error) {
	root, err := moduleRoot()
	if err != nil {
		if prebuilt == "" {
			return "", "", err
		}
		root = "."
	}
	if prebuilt != "" {
		abs, err := filepath.Abs(prebuilt)
		if err != nil {
			return "", "", fmt.Errorf("-l4edge %s: %w", prebuilt, err)
		}
		return abs, gitDescribe(root), nil
	}
	log.Info("building l4edge", zap.String("module", root))
	t0 := time.Now()
	bin, commit, err := buildL4edge(ctx, root, dir)
	if err != nil {
		return "", commit, err
	}
	log.Info("built l4edge", zap.String("commit", commit), zap.Duration("took", time.Since(t0).Round(time.Millisecond)))
	return bin, commit, nil
}

// baselineBinary returns the -baseline binary's absolute path once it is
// known to be an executable file.
func baselineBinary(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("-baseline %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("-baseline: %w (build the earlier l4edge first, e.g. go build -o /tmp/l4edge-before ./cmd/l4edge at that commit)", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("-baseline %s: not an executable file", abs)
	}
	return abs, nil
}

// warmUp runs connection-rate load on direct, unrecorded, for env.p.warm
// before anything is measured. A fresh harness and backend show tail
// latencies up to 3x their later ones for about their first 20 s (p99.9
// of connrate: 48-54 ms in the first 20 s of a run, 13-16 ms after, on
// l4edge and direct alike), which would fall on whichever target happens to
// be measured first.
func warmUp(ctx context.Context, log *zap.Logger, env *scenarioEnv, backend backendAddrs) {
	if env.p.warm <= 0 {
		return
	}
	warm := *env
	warm.p.rate = env.p.warm
	start := time.Now()
	out, err := runConnRate(ctx, &warm, &liveTarget{name: targetDirect, addrs: backend})
	if err != nil {
		log.Warn("warm-up failed; measuring anyway", zap.Error(err))
		return
	}
	log.Info("warmed up", zap.Duration("took", time.Since(start)), zap.Float64("conns_per_s", out.values["rate"]), zap.Float64("p99.9_us", out.values["p999"]))
}
