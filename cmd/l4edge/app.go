//go:build linux

package main

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

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
// swaps it in; connections keep the runtime they started with.
type app struct {
	path   string
	log    *zap.Logger
	level  zap.AtomicLevel
	server *l4.Server
	certs  *tlsterm.Manager
	hooks  *hooks

	adminSrv *admin.Server
	store    *redisstore.Storage // shared storage; nil for tls.storage.file
	cluster  *cluster.Cluster    // heartbeats and shared drains; nil without store
	notify   *notifier           // nil outside systemd

	mu       sync.Mutex // serializes start, reload and stop
	cfgMu    sync.Mutex // guards cfg for readers outside mu (admin)
	cfg      *config.Config
	pools    map[string]*balancer.Pool
	checkers []*health.Checker
}

func newApp(path string, cfg *config.Config, log *zap.Logger, level zap.AtomicLevel, eventLoops int) *app {
	a := &app{path: path, cfg: cfg, log: log, level: level}
	a.hooks = &hooks{log: log}
	a.server = l4.NewServer(l4.Options{
		Log:        log,
		AccessLog:  log,
		EventLoops: eventLoops,
		OnDone:     a.hooks.connectionDone,
		OnHandshake: func(listener string, d time.Duration) {
			if a.hooks.metrics != nil {
				a.hooks.metrics.Handshake(listener, d)
			}
		},
	})
	a.certs = tlsterm.NewManager(log.Named("tls"))
	a.hooks.metrics = admin.NewMetrics(a.sources())
	return a
}

// sources are the running state the admin endpoints and metrics read.
func (a *app) sources() admin.Sources {
	return admin.Sources{
		Listeners:   a.server.Listeners,
		Connections: a.server.Connections,
		Pools:       a.hooks.currentPools,
		Certificates: func() []admin.CertInfo {
			var out []admin.CertInfo
			for _, c := range a.certs.Certificates() {
				out = append(out, admin.CertInfo{Names: c.Names, NotAfter: c.NotAfter, Issuer: c.Issuer})
			}
			return out
		},
		Config: func() *config.Config {
			a.cfgMu.Lock()
			defer a.cfgMu.Unlock()
			return a.cfg
		},
		Reload:  a.reload,
		Storage: a.storageStatus,
		Cluster: a.clusterStatus,
		Drain:   a.drain,
		Ready: func() error {
			if a.server.Runtime() == nil {
				return errors.New("listeners not bound yet")
			}
			return nil
		},
	}
}

// storageStatus is the storage section of /status.
func (a *app) storageStatus() admin.StorageStatus {
	if a.store == nil {
		a.cfgMu.Lock()
		defer a.cfgMu.Unlock()
		return admin.StorageStatus{Kind: "file", Address: a.cfg.TLS.Storage.File, Up: true}
	}
	up, last := a.store.Health()
	return admin.StorageStatus{Kind: "redis", Address: a.store.Where(), Up: up, LastError: last}
}

// startAdmin serves the admin endpoints when admin.listen is set.
func (a *app) startAdmin() error {
	if a.cfg.Admin.Listen == "" {
		return nil
	}
	srv, err := admin.NewServer(a.cfg.Admin, a.sources(), a.hooks.metrics, a.log)
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

// start binds every listener and starts checks and certificate management.
func (a *app) start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.cfg.TLS.Storage.Redis; r != nil {
		st, err := openStorage(ctx, r, a.log, a.hooks.storageOp, a.hooks.storageState)
		if err != nil {
			return err
		}
		a.store = st
		a.certs.UseStorage(st)
	}
	if _, err := a.apply(ctx, a.cfg); err != nil {
		return err
	}
	if a.store != nil {
		a.cluster = a.startCluster()
		a.certs.OnObtained(a.cluster.AnnounceCert)
	}
	return a.startAdmin()
}

// reload re-reads the file; a file that does not validate is refused and
// the running configuration keeps serving.
func (a *app) reload(ctx context.Context) (err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.notify.reloading()
	defer func() {
		status := statusLine(len(a.cfg.Listeners))
		if err != nil {
			status += "; the last reload was refused (see the log)"
		}
		a.notify.ready(status)
	}()
	cfg, err := config.Load(a.path)
	if err != nil {
		a.hooks.reloaded(false)
		a.log.Error("reload refused: configuration does not validate; the running configuration keeps serving",
			zap.String("config", a.path), zap.Errors("errors", config.Errors(err)))
		return err
	}
	changes, err := a.apply(ctx, cfg)
	if err != nil {
		a.hooks.reloaded(false)
		a.log.Error("reload refused; the running configuration keeps serving", zap.String("config", a.path), zap.Error(err))
		return err
	}
	if cfg.Log.Level != a.cfg.Log.Level {
		if lvl, err := zap.ParseAtomicLevel(cfg.Log.Level); err == nil {
			a.level.SetLevel(lvl.Level())
		}
	}
	if !reflect.DeepEqual(cfg.TLS.Storage, a.cfg.TLS.Storage) {
		a.log.Warn("tls.storage changes take effect at the next restart")
	}
	if cfg.Log.Format != a.cfg.Log.Format {
		a.log.Warn("log.format changes take effect at the next restart")
	}
	a.cfgMu.Lock()
	a.cfg = cfg
	a.cfgMu.Unlock()
	a.hooks.reloaded(true)
	a.log.Info("configuration reloaded", append([]zap.Field{zap.String("config", a.path)}, changes...)...)
	return nil
}

// apply builds pools, certificates and routes for cfg and swaps them in.
// Nothing running changes when it fails. a.mu must be held.
func (a *app) apply(ctx context.Context, cfg *config.Config) ([]zap.Field, error) {
	pools := map[string]*balancer.Pool{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		pc := *cfg.Pools[name]
		p, err := balancer.NewPool(pc, a.pools[name], balancer.Options{
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
	changes := describeChanges(a.cfg, cfg, a.pools, pools)
	for _, c := range a.checkers {
		c.Stop()
	}
	a.checkers = a.checkers[:0]
	for _, name := range slices.Sorted(maps.Keys(pools)) {
		if c := health.Start(pools[name], health.Options{Log: a.log, Observe: a.hooks.healthChecked}); c != nil {
			a.checkers = append(a.checkers, c)
		}
	}
	a.pools = pools
	a.hooks.setPools(pools)
	if a.cluster != nil {
		a.cluster.Reapply()
	}
	return changes, nil
}

// onBackendChange closes a backend's open connections when it turns
// unhealthy, for pools with close_on_unhealthy.
func (a *app) onBackendChange(pc config.Pool) balancer.ChangeFunc {
	return func(b *balancer.Backend, old, new balancer.State, cause error) {
		a.hooks.backendChanged(pc.Name, b, new)
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
