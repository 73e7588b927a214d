//go:build linux

package main

import (
	"sync"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/admin"
	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4"
)

// hooks collects what the running parts report (finished connections,
// health checks, reloads) into the metrics, and keeps the current pools
// for the admin endpoints.
type hooks struct {
	log     *zap.Logger
	metrics *admin.Metrics

	mu    sync.Mutex
	pools map[string]*balancer.Pool
}

// connectionDone is called once per finished connection.
func (h *hooks) connectionDone(rec *l4.Record) {
	if h.metrics != nil {
		h.metrics.ConnectionDone(rec)
	}
}

// healthChecked is called after every active health check.
func (h *hooks) healthChecked(pool, backend string, err error) {
	if h.metrics != nil {
		h.metrics.HealthChecked(pool, backend, err)
	}
}

// backendChanged is called on every backend state change (the pool logs it).
func (h *hooks) backendChanged(string, *balancer.Backend, balancer.State) {}

// reloaded is called after every reload attempt.
func (h *hooks) reloaded(ok bool) {
	if h.metrics != nil {
		h.metrics.Reloaded(ok)
	}
}

// storageOp is called after every shared-storage operation.
func (h *hooks) storageOp(op, result string) {
	if h.metrics != nil {
		h.metrics.StorageOp(op, result)
	}
}

// storageState is called when the shared storage goes down or comes back.
func (h *hooks) storageState(up bool, _ error) {
	if h.metrics != nil {
		h.metrics.StorageUp(up)
	}
}

// setPools records the pools of the current runtime.
func (h *hooks) setPools(p map[string]*balancer.Pool) {
	h.mu.Lock()
	h.pools = p
	h.mu.Unlock()
}

// currentPools returns the pools of the current runtime.
func (h *hooks) currentPools() map[string]*balancer.Pool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pools
}
