//go:build linux

package main

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/admin"
	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/cluster"
	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/health"
	"github.com/l4edge/l4edge/l4"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/tlsterm"
	"github.com/l4edge/l4edge/tlsterm/redisstore"
)

// app wires one running l4edge: the server, the certificate manager, the
// pools and their health checkers. reload builds a whole new runtime and
// swaps it in; connections keep the runtime they started with. The server's
// current Runtime is the one home of the configuration and pools being
// served: everything that reads them (admin, cluster, drain) asks it.
type app struct {
	path    string
	log     *zap.Logger
	level   zap.AtomicLevel
	server  *l4.Server
	certs   *tlsterm.Manager
	metrics *admin.Metrics

	adminSrv *admin.Server
	store    *redisstore.Storage // shared storage; nil for tls.storage.file
	cluster  *cluster.Cluster    // heartbeats and shared drains; nil without store
	notify   *notifier           // nil outside systemd

	mu       sync.Mutex // serializes start, reload and stop
	checkers []*health.Checker
}

// newApp builds the parts in dependency order: the metrics read the server
// and the certificates only when scraped, so they come first and the
// server reports straight into them.
func newApp(path string, log *zap.Logger, level zap.AtomicLevel, eventLoops int) *app {
	a := &app{path: path, log: log, level: level}
	a.metrics = admin.NewMetrics(a.sources())
	a.server = l4.NewServer(l4.Options{
		Log:         log,
		AccessLog:   log,
		EventLoops:  eventLoops,
		OnDone:      a.metrics.ConnectionDone,
		OnHandshake: a.metrics.Handshake,
	})
	a.certs = tlsterm.NewManager(log.Named("tls"))
	return a
}

// sources are the running state the admin endpoints and metrics read. They
// reach the server and the certificate manager when called, not before.
func (a *app) sources() admin.Sources {
	return admin.Sources{
		Listeners:    func() []l4.ListenerStats { return a.server.Listeners() },
		Connections:  func() []l4.ConnInfo { return a.server.Connections() },
		Runtime:      func() *l4.Runtime { return a.server.Runtime() },
		Certificates: func() []tlsterm.CertInfo { return a.certs.Certificates() },
		Reload:       a.reload,
		Storage:      a.storageStatus,
		Cluster:      a.clusterStatus,
		Drain:        a.drain,
		Ready: func() error {
			if a.server.Runtime() == nil {
				return errors.New("listeners not bound yet")
			}
			return nil
		},
	}
}

// current is the configuration being served; nil before start has bound
// the listeners.
func (a *app) current() *config.Config {
	if rt := a.server.Runtime(); rt != nil {
		return rt.Config
	}
	return nil
}

// currentPools are the pools being served by name.
func (a *app) currentPools() map[string]*balancer.Pool {
	if rt := a.server.Runtime(); rt != nil {
		return rt.Pools
	}
	return nil
}

// storageStatus is the storage section of /status.
func (a *app) storageStatus() admin.StorageStatus {
	if a.store == nil {
		st := admin.StorageStatus{Kind: "file", Up: true}
		if cfg := a.current(); cfg != nil {
			st.Address = cfg.TLS.Storage.File
		}
		return st
	}
	up, last := a.store.Health()
	return admin.StorageStatus{Kind: "redis", Address: a.store.Where(), Up: up, LastError: last}
}

// startAdmin serves the admin endpoints when admin.listen is set.
func (a *app) startAdmin(cfg config.Admin) error {
	if cfg.Listen == "" {
		return nil
	}
	srv, err := admin.NewServer(cfg, a.sources(), a.metrics, a.log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	a.adminSrv = srv
	a.log.Info("admin listening", zap.Stringer("address", srv.Addr()))
	return nil
}

// start binds every listener of cfg and starts checks and certificate
// management.
func (a *app) start(ctx context.Context, cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := cfg.TLS.Storage.Redis; r != nil {
		st, err := openStorage(ctx, r, a.log, a.metrics.StorageOp, func(up bool, _ error) { a.metrics.StorageUp(up) })
		if err != nil {
			return err
		}
		a.store = st
		a.certs.UseStorage(st)
	}
	if _, err := a.apply(ctx, cfg); err != nil {
		return err
	}
	if a.store != nil {
		a.cluster = a.startCluster(cfg)
		a.certs.OnObtained(a.cluster.AnnounceCert)
	}
	return a.startAdmin(cfg.Admin)
}

// reload re-reads the file; a file that does not validate is refused and
// the running configuration keeps serving.
func (a *app) reload(ctx context.Context) (err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.current()
	if old == nil {
		return errors.New("reload: l4edge has not started")
	}
	a.notify.reloading()
	defer func() {
		status := statusLine(len(a.current().Listeners))
		if err != nil {
			status += "; the last reload was refused (see the log)"
		}
		a.notify.ready(status)
	}()
	cfg, err := config.Load(a.path)
	if err != nil {
		a.metrics.Reloaded(false)
		a.log.Error("reload refused: configuration does not validate; the running configuration keeps serving",
			zap.String("config", a.path), zap.Errors("errors", config.Errors(err)))
		return err
	}
	changes, err := a.apply(ctx, cfg)
	if err != nil {
		a.metrics.Reloaded(false)
		a.log.Error("reload refused; the running configuration keeps serving", zap.String("config", a.path), zap.Error(err))
		return err
	}
	if cfg.Log.Level != old.Log.Level {
		if lvl, err := zap.ParseAtomicLevel(cfg.Log.Level); err == nil {
			a.level.SetLevel(lvl.Level())
		}
	}
	if !reflect.DeepEqual(cfg.TLS.Storage, old.TLS.Storage) {
		a.log.Warn("tls.storage changes take effect at the next restart")
	}
	if cfg.Log.Format != old.Log.Format {
		a.log.Warn("log.format changes take effect at the next restart")
	}
	a.metrics.Reloaded(true)
	a.log.Info("configuration reloaded", append([]zap.Field{zap.String("config", a.path)}, changes...)...)
	return nil
}

// apply builds pools, certificates and routes for cfg and swaps them in.
// Nothing running changes when it fails. a.mu must be held.
func (a *app) apply(ctx context.Context, cfg *config.Config) ([]zap.Field, error) {
	oldCfg, oldPools := a.current(), a.currentPools()
	pools := map[string]*balancer.Pool{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		pc := *cfg.Pools[name]
		p, err := balancer.NewPool(pc, oldPools[name], balancer.Options{
			Log:      a.log,
			OnChange: a.onBackendChange(pc),
		})
		if err != nil {
			return nil, err
		}
		pools[name] = p
	}
	set, err := a.certs.Apply(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rt, err := l4.NewRuntime(cfg, pools, set)
	if err != nil {
		return nil, err
	}
	if err := a.server.Apply(rt); err != nil {
		return nil, err
	}
	changes := describeChanges(oldCfg, cfg, oldPools, pools)
	for _, c := range a.checkers {
		c.Stop()
	}
	a.checkers = a.checkers[:0]
	for _, name := range slices.Sorted(maps.Keys(pools)) {
		if c := health.Start(pools[name], health.Options{Log: a.log, Observe: a.metrics.HealthChecked}); c != nil {
			a.checkers = append(a.checkers, c)
		}
	}
	if a.cluster != nil {
		a.cluster.Reapply()
	}
	return changes, nil
}

// onBackendChange closes a backend's open connections when it turns
// unhealthy, for pools with close_on_unhealthy.
func (a *app) onBackendChange(pc config.Pool) balancer.ChangeFunc {
	return func(b *balancer.Backend, old, new balancer.State, cause error) {
		if pc.CloseOnUnhealthy && new == balancer.Unhealthy {
			// The hook runs under the backend's lock: close elsewhere.
			go func() {
				if n := a.server.CloseBackend(b, closereason.BackendDown); n > 0 {
					a.log.Info("closed connections to unhealthy backend",
						zap.String("pool", pc.Name), zap.String("backend", b.Address), zap.Int("connections", n))
				}
			}()
		}
	}
}

// stop drains: it stops accepting, lets connections finish until ctx ends,
// then closes the rest.
func (a *app) stop(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.server.Shutdown(ctx)
	if a.adminSrv != nil {
		_ = a.adminSrv.Shutdown(ctx)
	}
	for _, c := range a.checkers {
		c.Stop()
	}
	a.checkers = nil
	if cerr := a.certs.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if a.cluster != nil {
		a.cluster.Close()
		a.cluster = nil
	}
	if a.store != nil {
		_ = a.store.Close()
		a.store = nil
	}
	return err
}

// describeChanges summarizes a reload for its log line.
func describeChanges(old, cur *config.Config, oldPools, curPools map[string]*balancer.Pool) []zap.Field {
	if old == nil {
		return nil
	}
	addrs := func(c *config.Config) []string {
		var out []string
		for _, l := range c.Listeners {
			out = append(out, l.Listen)
		}
		return out
	}
	var added, removed, changedPools []string
	for _, a := range addrs(cur) {
		if !slices.Contains(addrs(old), a) {
			added = append(added, a)
		}
	}
	for _, a := range addrs(old) {
		if !slices.Contains(addrs(cur), a) {
			removed = append(removed, a)
		}
	}
	for name, p := range curPools {
		if op, ok := oldPools[name]; !ok || !reflect.DeepEqual(op.Config, p.Config) {
			changedPools = append(changedPools, name)
		}
	}
	for name := range oldPools {
		if _, ok := curPools[name]; !ok {
			changedPools = append(changedPools, name+" (removed)")
		}
	}
	slices.Sort(changedPools)
	return []zap.Field{
		zap.Strings("listeners_added", added),
		zap.Strings("listeners_removed", removed),
		zap.Strings("pools_changed", changedPools),
	}
}
