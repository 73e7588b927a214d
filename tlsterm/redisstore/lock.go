package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Lock and renewal scripts: each acts only when the lock still holds the
// caller's token, so a holder whose lease ran out cannot release or extend
// the lock of the one that took it over.
var (
	unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	renewScript  = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
)

// heldLock is a lock this Storage holds, with its renewal goroutine.
type heldLock struct {
	token string
	mu    sync.Mutex
	lease time.Duration
	stop  chan struct{}
	done  chan struct{}
}

func (h *heldLock) stopRenewal() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

func (h *heldLock) currentLease() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease
}

func (s *Storage) lockKey(name string) string { return s.opts.Prefix + ":lock:" + name }

// Lock blocks until it holds the named lock or ctx ends. The lock expires
// Lease after its holder stops renewing it (a crashed instance).
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil && ctx.Err() != nil {
			return err
		}
		if ok {
			return nil
		}
		wait := 200*time.Millisecond + jitter(200*time.Millisecond)
		if err != nil {
			wait = time.Second // Redis unreachable: do not hammer it
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis %s: waiting for lock %q: %w", s.Where(), name, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// TryLock takes the named lock if it is free and reports whether it did.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	token, err := newToken()
	if err != nil {
		return false, err
	}
	octx, cancel := s.ctx(ctx)
	defer cancel()
	ok, err := s.client.SetNX(octx, s.lockKey(name), token, s.opts.Lease).Result()
	if err = s.done("lock", name, err); err != nil || !ok {
		return false, err
	}
	h := &heldLock{token: token, lease: s.opts.Lease, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	if old := s.held[name]; old != nil {
		// A lock of ours that expired and was never unlocked: forget it.
		go old.stopRenewal()
	}
	s.held[name] = h
	s.mu.Unlock()
	go s.renew(name, h)
	return true, nil
}

// renew extends the lease every third of it while the lock is held.
func (s *Storage) renew(name string, h *heldLock) {
	defer close(h.done)
	for {
		select {
		case <-h.stop:
			return
		case <-time.After(h.currentLease() / 3):
		}
		ctx, cancel := s.ctx(context.Background())
		n, err := renewScript.Run(ctx, s.client, []string{s.lockKey(name)}, h.token, h.currentLease().Milliseconds()).Int()
		cancel()
		if s.done("renew_lock", name, err) != nil {
			continue // retried at the next tick, while the lease lasts
		}
		if n == 0 {
			s.log.Warn("lock lost: its lease expired before it was renewed", zap.String("lock", name))
			return
		}
	}
}

// Unlock releases the named lock if this Storage still holds it. It
// never releases a lock another holder took after this one's lease ran
// out.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("redis %s: unlock %q: this instance does not hold that lock", s.Where(), name)
	}
	h.stopRenewal()
	octx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := unlockScript.Run(octx, s.client, []string{s.lockKey(name)}, h.token).Int()
	if err = s.done("unlock", name, err); err != nil {
		return err
	}
	if n == 0 {
		s.log.Warn("unlock: the lock had expired and may be held by another instance now; left alone", zap.String("lock", name))
	}
	return nil
}

// RenewLockLease extends a held lock's lease to leaseDuration now, and
// keeps renewing it by that much.
func (s *Storage) RenewLockLease(ctx context.Context, name string, leaseDuration time.Duration) error {
	s.mu.Lock()
	h := s.held[name]
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("redis %s: renew lock %q: this instance does not hold that lock", s.Where(), name)
	}
	h.mu.Lock()
	h.lease = max(leaseDuration, s.opts.Lease)
	lease := h.lease
	h.mu.Unlock()
	octx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := renewScript.Run(octx, s.client, []string{s.lockKey(name)}, h.token, lease.Milliseconds()).Int()
	if err = s.done("renew_lock", name, err); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("redis %s: renew lock %q: %w", s.Where(), name, errLockLost)
	}
	return nil
}

var errLockLost = errors.New("the lock's lease expired and another holder may have it")

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("lock token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func jitter(d time.Duration) time.Duration {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(d)))
	if err != nil {
		return 0
	}
	return time.Duration(n.Int64())
}
