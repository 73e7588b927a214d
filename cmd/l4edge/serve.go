//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/config"
)

// validate checks a file and prints every problem at once: errors make the
// exit code 1, warnings alone do not.
func validate(path string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFatal
	}
	for _, w := range warnings(cfg) {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d pools)\n", path, len(cfg.Listeners), len(cfg.Pools))
	return exitOK
}

// warnings are the loader's warnings.
func warnings(cfg *config.Config) []string {
	return append([]string(nil), cfg.Warnings...)
}

// serve runs until SIGTERM or SIGINT: SIGHUP reloads, the first stop signal
// drains for shutdown_grace (0: until the connections end), a second one
// exits at once.
func serve(path string, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFatal
	}
	log, level, err := newLogger(cfg.Log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFatal
	}
	defer func() { _ = log.Sync() }()
	for _, w := range warnings(cfg) {
		log.Warn("configuration warning", zap.String("config", path), zap.String("warning", w))
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	ctx := context.Background()
	a := newApp(path, log, level, sizeEventLoops(log))
	a.notify = newNotifier(log)
	defer a.notify.close()
	if err := a.start(ctx, cfg); err != nil {
		log.Error("start failed", zap.String("config", path), zap.Error(err))
		_ = a.stop(ctx)
		return exitFatal
	}
	log.Info("l4edge started", zap.String("config", path), zap.Int("pid", os.Getpid()))
	// Every listener is bound (start returned): systemd may start what depends on us.
	a.notify.ready(statusLine(len(cfg.Listeners)))
	a.notify.watchdog()

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			log.Info("SIGHUP: reloading", zap.String("config", path))
			_ = a.reload(ctx)
			continue
		}
		return drain(ctx, a, log, sig, sigs)
	}
	return exitOK
}

// drain stops the app within shutdown_grace; a second stop signal cuts it short.
func drain(ctx context.Context, a *app, log *zap.Logger, sig os.Signal, sigs <-chan os.Signal) int {
	grace := a.current().ShutdownGrace
	a.server.StopAccepting() // before saying so: a connect after the line is refused
	a.notify.stopping()
	log.Info("stopping: no new connections; open ones may finish",
		zap.String("signal", sig.String()), zap.Duration("grace", grace),
		zap.Int("active", a.server.ActiveConnections()))
	sctx, cancel := context.WithCancel(ctx)
	if grace > 0 {
		sctx, cancel = context.WithTimeout(ctx, grace)
	}
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.stop(sctx) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				log.Warn("stopped after grace", zap.Error(err))
			} else {
				log.Info("stopped")
			}
			return exitOK
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue
			}
			log.Warn("second stop signal: exiting at once", zap.Int("active", a.server.ActiveConnections()))
			return exitFatal
		}
	}
}
