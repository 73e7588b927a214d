// Package cluster is what l4edge instances sharing a Redis know of each
// other: each writes a heartbeat (id, version, configuration hash,
// certificates held) every Interval with a TTL expiry, lists the members
// whose heartbeats are live, reports those whose configuration differs,
// and shares cluster-wide backend drains over Redis pub/sub.
//
// Keys, under the storage prefix: PREFIX:member:ID (a heartbeat, JSON,
// expiring), PREFIX:members (a sorted set of member ids by last beat, in Unix milliseconds),
// PREFIX:drains (a hash of the cluster-wide drains), PREFIX:epoch (a marker
// whose loss shows that Redis came back empty), and the channel
// PREFIX:drains that announces drain changes, and PREFIX:certs that
// announces certificates obtained or renewed.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/l4edge/l4edge/admin"
)

// Defaults of Options.
const (
	DefaultInterval = 10 * time.Second
	DefaultTTL      = 30 * time.Second
)

// Options configure a Cluster.
type Options struct {
	// Client is the shared Redis; Prefix its key prefix.
	Client *redis.Client
	Prefix string
	// ID identifies this instance (unique in the cluster); Version is its build.
	ID, Version string
	// ConfigHash returns the hash of the effective configuration (HashConfig).
	ConfigHash func() string
	// Certificates returns how many certificates this instance holds.
	Certificates func() int
	// Apply sets one backend's drain state in the running pools.
	Apply func(pool, backend string, draining bool)
	// OnCert, when set, is called with the name of a certificate another
	// member announced (AnnounceCert) as new in storage.
	OnCert func(name string)
	// Restore, when set, is called after Redis was found empty (restarted
	// without persistence), to write back what this instance holds.
	Restore func(ctx context.Context)
	// Interval and TTL of heartbeats (DefaultInterval, DefaultTTL when 0).
	Interval, TTL time.Duration
	// Timeout bounds one Redis operation.
	Timeout time.Duration
	Log     *zap.Logger
}

// heartbeat is the JSON of a member key.
type heartbeat struct {
	ID           string    `json:"id"`
	Version      string    `json:"version"`
	ConfigHash   string    `json:"config_hash"`
	Certificates int       `json:"certificates"`
	LastSeen     time.Time `json:"last_seen"`
}

// Cluster runs the heartbeat and drain subscription of one instance.
type Cluster struct {
	o         Options
	epoch     string
	seenEpoch bool // the marker was there once: its loss means Redis was emptied

	mu      sync.Mutex
	members []admin.MemberStatus
	local   map[drainKey]bool // drains set with scope local
	shared  map[drainKey]bool // drains set with scope cluster, as last read

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// Start writes the first heartbeat, reads the current drains and keeps
// both up to date until Close.
func Start(o Options) *Cluster {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	c := &Cluster{o: o, epoch: hex.EncodeToString(b), local: map[drainKey]bool{}, shared: map[drainKey]bool{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	c.beat()
	c.wg.Add(2)
	go c.loop()
	go c.subscribe()
	return c
}

// Close stops the heartbeat and removes this member's heartbeat.
func (c *Cluster) Close() {
	close(c.stop)
	c.wg.Wait()
	ctx, cancel := c.ctx()
	defer cancel()
	c.o.Client.Del(ctx, c.key("member:"+c.o.ID))
	c.o.Client.ZRem(ctx, c.key("members"), c.o.ID)
}

func (c *Cluster) key(s string) string { return c.o.Prefix + ":" + s }

func (c *Cluster) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.o.Timeout)
}

// loop beats every Interval, and re-reads the drains when told to.
func (c *Cluster) loop() {
	defer c.wg.Done()
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.beat()
		case <-c.kick:
			c.syncDrains()
		}
	}
}

// beat writes this member's heartbeat, notices an emptied Redis, reads
// the members and the drains. Failures are left to the next beat (the
// storage logs its own state changes).
func (c *Cluster) beat() {
	ctx, cancel := c.ctx()
	defer cancel()
	c.checkEpoch(ctx)
	now := time.Now()
	hb := heartbeat{ID: c.o.ID, Version: c.o.Version, ConfigHash: c.o.ConfigHash(), Certificates: c.o.Certificates(), LastSeen: now.UTC()}
	data, _ := json.Marshal(hb)
	_, err := c.o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, c.key("member:"+c.o.ID), data, c.o.TTL)
		p.ZAdd(ctx, c.key("members"), redis.Z{Score: float64(now.UnixMilli()), Member: c.o.ID})
		p.ZRemRangeByScore(ctx, c.key("members"), "-inf", "("+strconv.FormatInt(now.Add(-c.o.TTL).UnixMilli(), 10))
		return nil
	})
	if err != nil {
		return
	}
	c.readMembers(ctx)
	c.syncDrains()
}

// checkEpoch sets the epoch marker and, when a marker this instance saw
// is gone (Redis restarted empty), writes back the drains it knows and
// what Restore writes.
func (c *Cluster) checkEpoch(ctx context.Context) {
	set, err := c.o.Client.SetNX(ctx, c.key("epoch"), c.epoch, 0).Result()
	if err != nil {
		return
	}
	seen := c.seenEpoch
	c.seenEpoch = true
	if !set || !seen {
		return
	}
	c.mu.Lock()
	var shared []drainKey
	for k := range c.shared {
		shared = append(shared, k)
	}
	c.mu.Unlock()
	if len(shared) == 0 && c.o.Restore == nil {
		return
	}
	c.o.Log.Info("cluster storage found empty: writing back drains and certificates held", zap.Int("drains", len(shared)))
	for _, k := range shared {
		c.o.Client.HSet(ctx, c.key("drains"), k.field(), "1")
	}
	if c.o.Restore != nil {
		go c.o.Restore(context.Background())
	}
}

func (c *Cluster) readMembers(ctx context.Context) {
	ids, err := c.o.Client.ZRange(ctx, c.key("members"), 0, -1).Result()
	if err != nil || len(ids) == 0 {
		return
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = c.key("member:" + id)
	}
	vals, err := c.o.Client.MGet(ctx, keys...).Result()
	if err != nil {
		return
	}
	var members []admin.MemberStatus
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired
		}
		var hb heartbeat
		if json.Unmarshal([]byte(s), &hb) != nil {
			continue
		}
		members = append(members, admin.MemberStatus(hb))
	}
	slices.SortFunc(members, func(a, b admin.MemberStatus) int { return compareStrings(a.ID, b.ID) })
	c.mu.Lock()
	c.members = members
	c.mu.Unlock()
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Status is the cluster section of /status.
func (c *Cluster) Status() *admin.ClusterStatus {
	self := c.o.ConfigHash()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &admin.ClusterStatus{Self: c.o.ID, Members: slices.Clone(c.members), Drift: []string{}, Drains: []admin.DrainStatus{}}
	if st.Members == nil {
		st.Members = []admin.MemberStatus{}
	}
	for _, m := range c.members {
		if m.ConfigHash != self {
			st.Drift = append(st.Drift, m.ID)
		}
	}
	for k := range c.shared {
		st.Drains = append(st.Drains, admin.DrainStatus{Pool: k.pool, Backend: k.backend})
	}
	slices.SortFunc(st.Drains, func(a, b admin.DrainStatus) int {
		return compareStrings(a.Pool+"\x00"+a.Backend, b.Pool+"\x00"+b.Backend)
	})
	return st
}
