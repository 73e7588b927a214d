//go:build linux

package main

import (
	"context"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/admin"
	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/cluster"
	"github.com/l4edge/l4edge/config"
)

// instanceID is the host name plus the admin address, or the first
// listener's, so two instances on one host differ.
func instanceID(cfg *config.Config) string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	addr := cfg.Admin.Listen
	if addr == "" && len(cfg.Listeners) > 0 {
		addr = cfg.Listeners[0].Listen
	}
	return host + "/" + addr
}

// startCluster starts heartbeats and shared drains on the shared storage
// for cfg, the configuration just applied.
func (a *app) startCluster(cfg *config.Config) *cluster.Cluster {
	v, _ := buildVersion()
	return cluster.Start(cluster.Options{
		Client:       a.store.Client(),
		Prefix:       a.store.Prefix(),
		ID:           instanceID(cfg),
		Version:      v,
		ConfigHash:   func() string { return cluster.HashConfig(a.current()) },
		Certificates: func() int { return len(a.certs.Certificates()) },
		Apply:        a.applyDrain,
		OnCert: func(name string) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := a.certs.Refresh(ctx, name); err != nil {
				a.log.Warn("loading a certificate another member announced failed", zap.String("name", name), zap.Error(err))
			}
		},
		Restore: func(ctx context.Context) {
			if _, err := a.certs.WriteBack(ctx); err != nil {
				a.log.Warn("writing certificates back to storage failed", zap.Error(err))
			}
		},
		Timeout: cfg.TLS.Storage.Redis.Timeout,
		Log:     a.log.Named("cluster"),
	})
}

// applyDrain sets one backend's drain state in the current pools.
func (a *app) applyDrain(pool, backend string, on bool) {
	p := a.currentPools()[pool]
	if p == nil {
		return
	}
	if b := p.Backend(backend); b != nil && (b.State() == balancer.Draining) != on {
		b.SetDraining(on)
		a.log.Info("backend drain applied", zap.String("pool", pool), zap.String("backend", backend), zap.Bool("draining", on))
	}
}

// drain serves the admin drain and enable endpoints in both scopes.
func (a *app) drain(pool, backend, scope string, on bool) error {
	if a.cluster == nil {
		if scope == admin.ScopeCluster {
			return admin.ErrNoCluster
		}
		a.applyDrain(pool, backend, on)
		return nil
	}
	return a.cluster.SetDrain(context.Background(), pool, backend, scope == admin.ScopeCluster, on)
}

// clusterStatus is the cluster section of /status; nil without shared storage.
func (a *app) clusterStatus() *admin.ClusterStatus {
	if a.cluster == nil {
		return nil
	}
	return a.cluster.Status()
}
