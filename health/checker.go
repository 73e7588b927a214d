package health

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/balancer"
)

// Options configure a Checker.
type Options struct {
	// Log receives check failures at debug level (state changes are logged
	// by the pool).
	Log *zap.Logger
	// Observe, if set, is called after every check (metrics).
	Observe func(pool, backend string, err error)
}

// Checker runs the active checks of one pool until Stop.
type Checker struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start checks every backend of pool: the first check at once, then every
// interval plus a little jitter. It returns nil when the pool has no health
// settings.
func Start(pool *balancer.Pool, opts Options) *Checker {
	if pool.Config.Health == nil {
		return nil
	}
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checker{cancel: cancel}
	for _, b := range pool.Backends() {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.run(ctx, pool, b, log, opts.Observe)
		}()
	}
	return c
}

func (c *Checker) run(ctx context.Context, pool *balancer.Pool, b *balancer.Backend, log *zap.Logger, observe func(string, string, error)) {
	interval := pool.Config.Health.Interval
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := Check(ctx, pool.Config, b.Address)
		if ctx.Err() != nil {
			return // stopped mid-check: the result says nothing about the backend
		}
		if err != nil {
			log.Debug("health check failed", zap.String("pool", pool.Name), zap.String("backend", b.Address), zap.Error(err))
		}
		b.ReportCheck(err)
		if observe != nil {
			observe(pool.Name, b.Address, err)
		}
		timer.Reset(interval + jitter(interval))
	}
}

// Stop ends the checks and waits for any running one (bounded by its timeout).
func (c *Checker) Stop() {
	if c == nil {
		return
	}
	c.cancel()
	c.wg.Wait()
}
