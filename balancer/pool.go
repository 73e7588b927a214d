package balancer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/config"
)

// ErrNoBackend means every backend of the pool is unhealthy, draining or
// already tried: the connection cannot be served.
var ErrNoBackend = errors.New("no healthy backend")

// DialError is a failed attempt to reach a backend.
type DialError struct {
	Pool     string
	Address  string
	Attempt  int
	Attempts int
	Err      error
}

// Error says what failed, where and on which attempt.
func (e *DialError) Error() string {
	return fmt.Sprintf("dial %s: %v (pool %s, attempt %d/%d)", e.Address, e.Err, e.Pool, e.Attempt, e.Attempts)
}

// Unwrap returns the dial error.
func (e *DialError) Unwrap() error { return e.Err }

// Pool is a named set of backends and the policy that picks among them.
type Pool struct {
	// Name is the pool's name in the configuration.
	Name string
	// Config is the pool's configuration after defaults.
	Config config.Pool

	backends []*Backend
	policy   policy
	state    *poolState
	log      *zap.Logger
	allDown  atomic.Bool // "no healthy backend" or panic was logged; the next healthy pick logs the end
	// panicLogged is when "pool in panic" was last logged (unix nanos).
	panicLogged atomic.Int64
	literal     bool // every backend address is an IP literal (CanStartConnect)
}

// Options are the hooks a pool reports to.
type Options struct {
	// Log receives state changes of backends and of the pool.
	Log *zap.Logger
	// OnChange, if set, is called after logging every backend state change.
	// It runs with the backend's lock held: it may read State and Active but
	// must not call Snapshot or report results.
	OnChange ChangeFunc
}

// NewPool builds a pool from its configuration. When prev is not nil and has
// the same backend list (addresses and weights) and the same health settings,
// the new pool keeps prev's backends, with their health state and counters,
// so a reload does not restart a rise period.
func NewPool(cfg config.Pool, prev *Pool, opts Options) (*Pool, error) {
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	p := &Pool{Name: cfg.Name, Config: cfg, log: log.With(zap.String("pool", cfg.Name))}
	p.state = &poolState{}
	p.state.onChange = func(b *Backend, old, new State, cause error) {
		p.logChange(b, old, new, cause)
		if opts.OnChange != nil {
			opts.OnChange(b, old, new, cause)
		}
	}
	if prev != nil && sameBackends(prev.Config, cfg) {
		p.backends = prev.backends
		for _, b := range p.backends {
			b.mu.Lock()
			b.pool = p.state
			b.cooldown = cfg.PassiveCooldown
			b.passiveFall = max(cfg.PassiveFall, 1)
			b.mu.Unlock()
		}
	} else {
		for _, bc := range cfg.Backends {
			p.backends = append(p.backends, newBackend(bc, cfg, p.state))
		}
	}
	p.literal = allLiteral(p.backends)
	pol, err := newPolicy(cfg.Policy, p.backends)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", cfg.Name, err)
	}
	p.policy = pol
	return p, nil
}

func newBackend(bc config.Backend, cfg config.Pool, ps *poolState) *Backend {
	b := &Backend{
		Address:     bc.Address,
		Weight:      max(bc.Weight, 1),
		pool:        ps,
		sa:          socketAddress(bc.Address),
		hasActive:   cfg.Health != nil,
		rise:        1,
		fall:        1,
		passiveFall: max(cfg.PassiveFall, 1),
		cooldown:    cfg.PassiveCooldown,
	}
	if cfg.Health != nil {
		b.rise, b.fall = max(cfg.Health.Rise, 1), max(cfg.Health.Fall, 1)
	}
	// Without an active check a backend starts healthy; with one it also
	// starts healthy until the first check (run at once) says otherwise, so a
	// fresh process serves at once. The first failed check takes it out
	// regardless of fall (see health.Checker).
	b.up.Store(true)
	return b
}

// sameBackends reports whether a reload may keep the old backends' state.
func sameBackends(a, b config.Pool) bool {
	if !slices.Equal(a.Backends, b.Backends) {
		return false
	}
	if (a.Health == nil) != (b.Health == nil) {
		return false
	}
	return a.Health == nil || (a.Health.Rise == b.Health.Rise && a.Health.Fall == b.Health.Fall)
}

// Backends returns the pool's members in configuration order.
func (p *Pool) Backends() []*Backend { return p.backends }

// Backend returns the member with the given address, or nil.
func (p *Pool) Backend(address string) *Backend {
	for _, b := range p.backends {
		if b.Address == address {
			return b
		}
	}
	return nil
}

// Dial picks a backend for a client and connects to it, moving on to the
// next backend after a failure as Attempts decides (up to
// connect_attempts; a failed dial is a passive failure of that backend).
// The returned backend's Release must be called when the connection ends.
// The error is ErrNoBackend when no backend could be tried at all,
// otherwise the last *DialError.
func (p *Pool) Dial(ctx context.Context, client netip.Addr) (*net.TCPConn, *Backend, error) {
	var a Attempts
	a.reset(p, client)
	for b := a.Next(); b != nil; b = a.Next() {
		conn, err := p.dialOne(ctx, b.Address)
		if err == nil {
			a.Connected()
			return conn, b, nil
		}
		if !a.Failed(unwrapOpError(err)) || ctx.Err() != nil {
			break
		}
	}
	return nil, nil, a.Err()
}

// backendKeepAlive is the keepalive idle time and probe interval of
// backend sockets (Dial and StartConnect).
const backendKeepAlive = 30 * time.Second

func (p *Pool) dialOne(ctx context.Context, address string) (*net.TCPConn, error) {
	// Count -1 leaves the probe count at the system default (9, as Go
	// would set it) and saves a system call per connection.
	d := net.Dialer{Timeout: p.Config.ConnectTimeout, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: backendKeepAlive, Interval: backendKeepAlive, Count: -1}}
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("dial %s: not a TCP connection", address)
	}
	return tc, nil
}

// unwrapOpError drops net.OpError's own "dial tcp ADDR:" prefix, which
// DialError already says, keeping the cause ("connection refused", "i/o timeout").
func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		if op.Timeout() {
			return fmt.Errorf("connect timeout: %w", op.Err)
		}
		return op.Err
	}
	return err
}

// LocalResourceError reports whether a dial failed for lack of local
// resources (descriptors, buffers, memory) rather than because of the
// backend: another backend would fail the same way, and accepting more
// connections only makes more such failures.
func LocalResourceError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// noteAllDown logs the pool's transition to "no healthy backend" once.
func (p *Pool) noteAllDown(tried []*Backend) {
	if len(tried) > 0 {
		return // some backend was eligible; it failed to connect
	}
	if p.allDown.CompareAndSwap(false, true) {
		p.log.Warn("no healthy backend", zap.Int("backends", len(p.backends)))
	}
}

// noteUp logs the end of a "no healthy backend" or panic period once: a
// connect that worked in panic is not the end of it.
func (p *Pool) noteUp() {
	if p.allDown.Load() && !p.InPanic() && p.allDown.CompareAndSwap(true, false) {
		p.log.Info("pool has a healthy backend again")
	}
}

func (p *Pool) logChange(b *Backend, old, new State, cause error) {
	fields := []zap.Field{zap.String("backend", b.Address), zap.String("old", old.String()), zap.String("new", new.String())}
	if cause != nil {
		fields = append(fields, zap.Error(cause))
		p.log.Warn("backend state changed", fields...)
		return
	}
	p.log.Info("backend state changed", fields...)
	if new == Healthy {
		p.noteUp()
	}
}
