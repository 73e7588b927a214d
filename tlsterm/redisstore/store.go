// Package redisstore keeps certmagic's certificates, keys, ACME challenge
// data and locks in Redis (one server or a Sentinel group), so several
// l4edge instances share them.
//
// Every key lives under a prefix, so several clusters can share a Redis:
// a value is the hash PREFIX:v:KEY (fields data and mod, the Unix time in
// nanoseconds of its last Store), the sorted set PREFIX:index lists every
// key for List and directory lookups, and a lock is the string
// PREFIX:lock:NAME holding its holder's random token.
package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults of Options.
const (
	DefaultPrefix  = "l4edge"
	DefaultTimeout = 2 * time.Second
	DefaultLease   = 15 * time.Second
)

// Options configure a Storage.
type Options struct {
	// Address is host:port of one Redis server; empty when Sentinel is used.
	Address string
	// MasterName and SentinelAddrs select a Sentinel-managed primary.
	MasterName    string
	SentinelAddrs []string
	// Username and Password authenticate (ACL user; password alone for requirepass).
	Username, Password string
	// DB is the database number.
	DB int
	// Prefix is prepended to every key (DefaultPrefix when empty).
	Prefix string
	// TLS, when set, speaks TLS to Redis (and to the sentinels).
	TLS *tls.Config
	// Timeout bounds one operation (DefaultTimeout when 0).
	Timeout time.Duration
	// Lease is how long a lock outlives a holder that stops renewing it
	// (DefaultLease when 0). A holder renews every Lease/3.
	Lease time.Duration
	// Log receives the storage state changes and lock warnings.
	Log *zap.Logger
	// Observe, when set, is called after every storage operation with its
	// name and result (ok, not_found, error).
	Observe func(op, result string)
	// OnState, when set, is called when Redis becomes unreachable (up
	// false, with the error) or reachable again.
	OnState func(up bool, err error)
}

// Storage is a certmagic.Storage, certmagic.TryLocker and
// certmagic.LockLeaseRenewer in Redis. It is safe for concurrent use.
type Storage struct {
	opts   Options
	client *redis.Client
	log    *zap.Logger

	mu    sync.Mutex
	held  map[string]*heldLock // locks this Storage holds, by name
	state state

	stop chan struct{}
	wg   sync.WaitGroup
}

var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

// New returns a Storage for opts. It does not contact Redis: call Check
// for that. Close releases it.
func New(opts Options) *Storage {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	s := &Storage{opts: opts, client: newClient(opts), log: opts.Log, held: map[string]*heldLock{}, stop: make(chan struct{})}
	s.state.up = true
	s.wg.Add(1)
	go s.monitor()
	return s
}

// newClient builds the go-redis client: a failover client when sentinels
// are given, a plain one otherwise.
func newClient(o Options) *redis.Client {
	if len(o.SentinelAddrs) > 0 {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs,
			Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS,
			DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
			MaxRetries: 1, PoolSize: 16,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr: o.Address, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS,
		DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
		MaxRetries: 1, PoolSize: 16,
	})
}

// Client returns the underlying client, for the cluster features that
// share the connection (heartbeats, pub/sub).
func (s *Storage) Client() *redis.Client { return s.client }

// Prefix returns the key prefix.
func (s *Storage) Prefix() string { return s.opts.Prefix }

// Where names the Redis this Storage talks to, for logs and errors.
func (s *Storage) Where() string {
	if len(s.opts.SentinelAddrs) > 0 {
		return fmt.Sprintf("sentinel %s (master %s)", strings.Join(s.opts.SentinelAddrs, ","), s.opts.MasterName)
	}
	return s.opts.Address
}

// Close stops lock renewals and the monitor and closes the connections.
// Locks still held are left to expire with their lease.
func (s *Storage) Close() error {
	s.mu.Lock()
	for _, h := range s.held {
		h.stopRenewal()
	}
	s.held = map[string]*heldLock{}
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	return s.client.Close()
}

func (s *Storage) valueKey(key string) string { return s.opts.Prefix + ":v:" + key }
func (s *Storage) indexKey() string           { return s.opts.Prefix + ":index" }

// ctx bounds one operation by the configured timeout.
func (s *Storage) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.opts.Timeout)
}

// Store puts value at key, overwriting what was there.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.valueKey(key)) // whatever was there, even of another type
		p.HSet(ctx, s.valueKey(key), "data", value, "mod", strconv.FormatInt(time.Now().UnixNano(), 10))
		p.ZAdd(ctx, s.indexKey(), redis.Z{Member: key})
		return nil
	})
	return s.done("store", key, err)
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.client.HGet(ctx, s.valueKey(key), "data").Bytes()
	return b, s.done("load", key, err)
}

// Delete removes key and, when it is a directory, every key under it.
func (s *Storage) Delete(ctx context.Context, key string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	under, err := s.under(ctx, key, 0)
	if err != nil {
		return s.done("delete", key, err)
	}
	keys := append(under, key)
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, s.valueKey(k))
			p.ZRem(ctx, s.indexKey(), k)
		}
		return nil
	})
	return s.done("delete", key, err)
}

// Exists reports whether key is a value or a directory of values.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.client.Exists(ctx, s.valueKey(key)).Result()
	if err == nil && n == 0 {
		var under []string
		if under, err = s.under(ctx, key, 1); err == nil && len(under) > 0 {
			n = 1
		}
	}
	if s.done("exists", key, err) != nil {
		return false
	}
	return n > 0
}

// List returns the keys under path: its direct children (values and
// directories) or, when recursive, every key and directory below it, as
// certmagic's FileStorage does.
func (s *Storage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	under, err := s.under(ctx, path, 0)
	if err != nil {
		return nil, s.done("list", path, err)
	}
	if len(under) == 0 {
		return nil, s.done("list", path, redis.Nil)
	}
	base := strings.TrimSuffix(path, "/")
	seen := map[string]bool{}
	var out []string
	for _, k := range under {
		rest := strings.TrimPrefix(k, base+"/")
		if base == "" {
			rest = k
		}
		parts := strings.Split(rest, "/")
		if !recursive {
			parts = parts[:1]
		}
		for i := range parts {
			p := strings.Join(parts[:i+1], "/")
			if base != "" {
				p = base + "/" + p
			}
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out, s.done("list", path, nil)
}

// Stat describes key; a directory is reported with IsTerminal false, a
// missing key with an error wrapping fs.ErrNotExist.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var mod *redis.StringCmd
	var size *redis.IntCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		mod = p.HGet(ctx, s.valueKey(key), "mod")
		size = p.HStrLen(ctx, s.valueKey(key), "data")
		return nil
	})
	if errors.Is(err, redis.Nil) {
		under, uerr := s.under(ctx, key, 1)
		if uerr == nil && len(under) > 0 {
			return certmagic.KeyInfo{Key: key}, s.done("stat", key, nil)
		}
		if uerr != nil {
			err = uerr
		}
		return certmagic.KeyInfo{}, s.done("stat", key, err)
	}
	if err != nil {
		return certmagic.KeyInfo{}, s.done("stat", key, err)
	}
	ns, perr := strconv.ParseInt(mod.Val(), 10, 64)
	if perr != nil {
		return certmagic.KeyInfo{}, s.done("stat", key, fmt.Errorf("modification time %q: %w", mod.Val(), perr))
	}
	return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, ns), Size: size.Val(), IsTerminal: true}, s.done("stat", key, nil)
}

// under returns up to limit (0: all) keys below dir.
func (s *Storage) under(ctx context.Context, dir string, limit int64) ([]string, error) {
	by := &redis.ZRangeBy{Min: "-", Max: "+", Count: limit}
	if d := strings.TrimSuffix(dir, "/"); d != "" {
		by.Min, by.Max = "["+d+"/", "["+d+"/\xff"
	}
	return s.client.ZRangeByLex(ctx, s.indexKey(), by).Result()
}

// done records an operation's result and turns redis.Nil into
// fs.ErrNotExist, naming the key.
func (s *Storage) done(op, key string, err error) error {
	result, cause := "ok", err
	switch {
	case err == nil:
	case errors.Is(err, redis.Nil):
		result = "not_found"
		err = fmt.Errorf("redis %s: key %q: %w", s.Where(), key, fs.ErrNotExist)
	case strings.HasPrefix(err.Error(), "WRONGTYPE"):
		result = "error"
		err = fmt.Errorf("redis %s: %s %q: %w (%w: not written by l4edge)", s.Where(), op, key, err, fs.ErrInvalid)
	default:
		result = "error"
		err = fmt.Errorf("redis %s: %s %q: %w", s.Where(), op, key, err)
	}
	s.observe(op, result, cause, err)
	return err
}
