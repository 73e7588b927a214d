//go:build linux

// Command bench is l4edge's benchmark harness. On loopback it starts a Go
// echo/source backend (itself, re-executed as `backend`), then l4edge,
// HAProxy (mode tcp, nbthread 2), nginx (stream, 2 workers) and a direct
// connection in turn, measures bulk throughput, connection rate, ping-pong
// latency, idle-connection cost and TLS termination on each, and prints one
// table of medians with the ratios between them.
//
//	go run ./bench -out bench/RESULTS.md            # full run, about 10 minutes
//	go run ./bench -smoke                           # every scenario for a moment
//	go run ./bench -only l4edge,direct -scenarios bulk-1,idle
//	go run ./bench -soak 10m -soak-out bench/SOAK.md  # the soak (make soak)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Exit codes.
const (
	exitOK    = 0
	exitFatal = 1
	exitUsage = 2
)

func main() {
	log := newLogger()
	defer func() { _ = log.Sync() }()
	if len(os.Args) > 1 && os.Args[1] == "backend" {
		os.Exit(backendMain(os.Args[2:], log))
	}
	os.Exit(harnessMain(os.Args[1:], os.Stdout, log))
}

// newLogger logs progress to standard error in console format.
func newLogger() *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), zap.InfoLevel)
	return zap.New(core)
}

// options are the harness's flags.
type options struct {
	smoke     bool
	out       string
	only      []string
	scenarios []string
	runs      int
	l4edge    string
	baseline  string
	install   bool
	timeout   time.Duration
	soak      time.Duration
	soakOut   string
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.smoke, "smoke", false, "run every scenario briefly with small counts, once (for tests)")
	fs.StringVar(&o.out, "out", "", "also write the results as Markdown to this file (e.g. bench/RESULTS.md)")
	only := fs.String("only", "", "comma-separated targets to measure (default "+strings.Join(defaultTargets(), ",")+", and l4edge-baseline with -baseline)")
	scens := fs.String("scenarios", "", "comma-separated scenarios (default all): "+strings.Join(scenarioNames(), ", "))
	fs.IntVar(&o.runs, "runs", 0, "runs per cell (default 3, 1 with -smoke)")
	fs.StringVar(&o.l4edge, "l4edge", "", "prebuilt l4edge binary (default: go build ./cmd/l4edge at run time)")
	fs.StringVar(&o.baseline, "baseline", "", "another l4edge binary, measured beside l4edge with its configuration as target l4edge-baseline: a before/after in one run")
	fs.BoolVar(&o.install, "install", true, "apt-get install haproxy, nginx and libnginx-mod-stream when missing (root only)")
	fs.DurationVar(&o.timeout, "timeout", 0, "stop measuring after this long (default 60m, 5m with -smoke)")
	fs.DurationVar(&o.soak, "soak", 0, "instead of the benchmark, soak l4edge this long under held WebSockets, churn, reloads, backend kills and slowloris")
	fs.StringVar(&o.soakOut, "soak-out", "bench/SOAK.md", "with -soak: the report to write (the chart soak.png goes beside it)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.only = splitList(*only)
	if len(o.only) == 0 {
		o.only = defaultTargets()
		if o.baseline != "" {
			o.only = append(o.only, targetL4edgeBaseline)
		}
	}
	for _, t := range o.only {
		if !slices.Contains(allTargets, t) {
			return o, fmt.Errorf("-only: unknown target %q (known: %s)", t, strings.Join(allTargets, ", "))
		}
	}
	if slices.Contains(o.only, targetL4edgeBaseline) && o.baseline == "" {
		return o, fmt.Errorf("-only: target %s needs the binary to measure: -baseline PATH", targetL4edgeBaseline)
	}
	o.scenarios = splitList(*scens)
	return o, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// harnessMain runs the benchmark and returns the exit code.
func harnessMain(args []string, stdout io.Writer, log *zap.Logger) int {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return exitUsage
	}
	if o.soak > 0 {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, o.soak+5*time.Minute)
		defer cancel()
		return soakMain(ctx, o, stdout, log)
	}
	p, mode := fullParams(), "full"
	if o.smoke {
		p, mode = smokeParams(), "smoke"
	}
	if o.runs > 0 {
		p.runs = o.runs
	}
	if o.timeout == 0 {
		o.timeout = 60 * time.Minute
		if o.smoke {
			o.timeout = 5 * time.Minute
		}
	}
	scens, err := selectScenarios(scenarios(p), o.scenarios)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	r, m, err := run(ctx, log, o, p, scens)
	if err != nil {
		log.Error("benchmark failed", zap.Error(err))
		return exitFatal
	}
	m.mode = mode
	doc := document(m, r)
	fmt.Fprint(stdout, r.table())
	for _, n := range r.notes() {
		fmt.Fprintln(stdout, "note:", n)
	}
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(doc), 0o644); err != nil {
			log.Error("write results", zap.String("file", o.out), zap.Error(err))
			return exitFatal
		}
		log.Info("results written", zap.String("file", o.out))
	}
	if n := r.failures(); n > 0 {
		log.Error("some runs failed; see the notes", zap.Int("failed_runs", n))
		return exitFatal
	}
	if ctx.Err() != nil {
		log.Error("stopped before every cell was measured", zap.Error(ctx.Err()))
		return exitFatal
	}
	return exitOK
}
