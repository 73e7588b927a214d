package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// drainKey names one backend of one pool.
type drainKey struct{ pool, backend string }

func (k drainKey) field() string { return k.pool + "\x00" + k.backend }

func parseField(f string) (drainKey, bool) {
	pool, backend, ok := strings.Cut(f, "\x00")
	return drainKey{pool, backend}, ok
}

// SetDrain drains (on) or enables a backend in a scope: local changes
// only this instance; cluster stores the drain in Redis and announces it,
// and every member applies it. A backend is draining while either scope
// drains it, so a local enable leaves a cluster drain in place.
func (c *Cluster) SetDrain(ctx context.Context, pool, backend string, cluster, on bool) error {
	k := drainKey{pool, backend}
	if !cluster {
		c.mu.Lock()
		if on {
			c.local[k] = true
		} else {
			delete(c.local, k)
		}
		c.mu.Unlock()
		c.apply(k)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	var err error
	if on {
		err = c.o.Client.HSet(ctx, c.key("drains"), k.field(), "1").Err()
	} else {
		err = c.o.Client.HDel(ctx, c.key("drains"), k.field()).Err()
	}
	if err != nil {
		return fmt.Errorf("cluster drain of %s in pool %s: Redis: %w", backend, pool, err)
	}
	if err := c.o.Client.Publish(ctx, c.key("drains"), k.field()).Err(); err != nil {
		return fmt.Errorf("cluster drain of %s in pool %s: announce: %w", backend, pool, err)
	}
	c.mu.Lock()
	if on {
		c.shared[k] = true
	} else {
		delete(c.shared, k)
	}
	c.mu.Unlock()
	c.apply(k)
	return nil
}

// apply sets a backend's state from both scopes.
func (c *Cluster) apply(k drainKey) {
	c.mu.Lock()
	on := c.local[k] || c.shared[k]
	c.mu.Unlock()
	c.o.Apply(k.pool, k.backend, on)
}

// Reapply sets every drained backend again, after a reload built new pools.
func (c *Cluster) Reapply() {
	c.mu.Lock()
	keys := map[drainKey]bool{}
	for k := range c.local {
		keys[k] = true
	}
	for k := range c.shared {
		keys[k] = true
	}
	c.mu.Unlock()
	for k := range keys {
		c.apply(k)
	}
}

// syncDrains reads the cluster-wide drains and applies what changed.
func (c *Cluster) syncDrains() {
	ctx, cancel := c.ctx()
	defer cancel()
	var keys *redis.StringSliceCmd
	_, err := c.o.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, c.key("epoch"))
		keys = p.HKeys(ctx, c.key("drains"))
		return nil
	})
	if err != nil {
		return // also when the epoch is gone: Redis was emptied, and the next beat restores the drains
	}
	fields := keys.Val()
	now := map[drainKey]bool{}
	for _, f := range fields {
		if k, ok := parseField(f); ok {
			now[k] = true
		}
	}
	c.mu.Lock()
	var changed []drainKey
	for k := range now {
		if !c.shared[k] {
			changed = append(changed, k)
		}
	}
	for k := range c.shared {
		if !now[k] {
			changed = append(changed, k)
		}
	}
	c.shared = now
	c.mu.Unlock()
	for _, k := range changed {
		c.apply(k)
	}
}

// subscribe re-reads the drains whenever a member announces a change, and
// after every reconnection (a change may have been missed meanwhile); and
// passes certificate announcements to OnCert.
func (c *Cluster) subscribe() {
	defer c.wg.Done()
	for {
		ps := c.o.Client.Subscribe(context.Background(), c.key("drains"), c.key("certs"))
		ch := ps.Channel()
		c.nudge()
	loop:
		for {
			select {
			case <-c.stop:
				_ = ps.Close()
				return
			case msg, ok := <-ch:
				if !ok {
					break loop
				}
				if msg.Channel == c.key("certs") {
					if c.o.OnCert != nil {
						go c.o.OnCert(msg.Payload)
					}
					continue
				}
				c.nudge()
			}
		}
		_ = ps.Close()
		select {
		case <-c.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

func (c *Cluster) nudge() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// AnnounceCert tells the other members that name's certificate in storage
// is new (obtained or renewed here), so they serve it at once.
func (c *Cluster) AnnounceCert(name string) {
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.o.Client.Publish(ctx, c.key("certs"), name).Err(); err != nil {
		c.o.Log.Warn("announcing a new certificate failed; members pick it up at their next renewal check", zap.String("name", name), zap.Error(err))
	}
}
