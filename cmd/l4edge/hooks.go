package main

import (
	"sync"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4"
)

// hooks collects what the running parts report: finished connections,
// health check results, backend state changes and reloads. The admin
// endpoints and metrics read from here.
type hooks struct {
	log *zap.Logger

	mu    sync.Mutex
	pools map[string]*balancer.Pool
}

func newHooks(log *zap.Logger) *hooks { return &hooks{log: log} }

// connectionDone is called once per finished connection.
func (h *hooks) connectionDone(rec *l4.Record) {}

// healthChecked is called after every active health check.
func (h *hooks) healthChecked(pool, backend string, err error) {}

// backendChanged is called on every backend state change.
func (h *hooks) backendChanged(pool string, b *balancer.Backend, state balancer.State) {}

// reloaded is called after every reload attempt.
func (h *hooks) reloaded(ok bool) {}

// setPools records the pools of the current runtime.
func (h *hooks) setPools(p map[string]*balancer.Pool) {
	h.mu.Lock()
	h.pools = p
	h.mu.Unlock()
}
