package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/l4edge/l4edge/config"
)

// policy chooses one eligible backend that is not in exclude (the backends
// already tried for this connection), or nil when there is none.
type policy interface {
	pick(client netip.Addr, exclude []*Backend, now int64) *Backend
}

func newPolicy(name string, backends []*Backend) (policy, error) {
	switch name {
	case "", config.PolicyRoundRobin:
		return &roundRobin{backends: backends}, nil
	case config.PolicyWeightedRoundRobin:
		return &smoothWeighted{backends: backends, current: make([]int, len(backends))}, nil
	case config.PolicyLeastConn:
		return &leastConn{backends: backends}, nil
	case config.PolicyRandomTwo:
		return &randomTwo{backends: backends}, nil
	case config.PolicyIPHash:
		return &rendezvous{backends: backends}, nil
	}
	return nil, fmt.Errorf("unknown policy %q", name)
}

func usable(b *Backend, exclude []*Backend, now int64) bool {
	return !slices.Contains(exclude, b) && b.eligible(now)
}

// roundRobin rotates exactly over the eligible backends: with k eligible,
// pick n takes the (n mod k)-th of them, so k*m picks land m on each.
type roundRobin struct {
	backends []*Backend
	next     atomic.Uint64
}

func (r *roundRobin) pick(_ netip.Addr, exclude []*Backend, now int64) *Backend {
	k := 0
	for _, b := range r.backends {
		if usable(b, exclude, now) {
			k++
		}
	}
	if k == 0 {
		return nil
	}
	n := r.next.Add(1) - 1
	want := int(n % uint64(k))
	for _, b := range r.backends {
		if usable(b, exclude, now) {
			if want == 0 {
				return b
			}
			want--
		}
	}
	// Eligibility changed between the two passes; take any usable one.
	for _, b := range r.backends {
		if usable(b, exclude, now) {
			return b
		}
	}
	return nil
}

// smoothWeighted is nginx's smooth weighted round-robin: every pick adds each
// eligible backend's weight to its current value, takes the largest, and
// subtracts the total from the winner. Weights 3:1 give a,a,b,a (never a run
// of three), exactly 3:1 over every 4 picks.
type smoothWeighted struct {
	backends []*Backend
	mu       sync.Mutex
	current  []int
}

func (s *smoothWeighted) pick(_ netip.Addr, exclude []*Backend, now int64) *Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, total := -1, 0
	for i, b := range s.backends {
		if !usable(b, exclude, now) {
			continue
		}
		s.current[i] += b.Weight
		total += b.Weight
		if best < 0 || s.current[i] > s.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	s.current[best] -= total
	return s.backends[best]
}

// leastConn takes the backend with the fewest open connections, breaking
// ties by rotation so equal backends share the load.
type leastConn struct {
	backends []*Backend
	next     atomic.Uint64
}

func (l *leastConn) pick(_ netip.Addr, exclude []*Backend, now int64) *Backend {
	n := len(l.backends)
	start := int(l.next.Add(1) % uint64(n))
	var best *Backend
	for i := range n {
		b := l.backends[(start+i)%n]
		if usable(b, exclude, now) && (best == nil || b.Active() < best.Active()) {
			best = b
		}
	}
	return best
}

// randomTwo samples two eligible backends at random and takes the one with
// fewer open connections (the power of two choices).
type randomTwo struct {
	backends []*Backend
}

func (r *randomTwo) pick(_ netip.Addr, exclude []*Backend, now int64) *Backend {
	var first, second *Backend
	seen := 0
	// Reservoir-sample two distinct usable backends in one pass.
	for _, b := range r.backends {
		if !usable(b, exclude, now) {
			continue
		}
		seen++
		switch {
		case seen == 1:
			first = b
		case seen == 2:
			second = b
		default:
			if j := rand.IntN(seen); j == 0 {
				first = b
			} else if j == 1 {
				second = b
			}
		}
	}
	switch {
	case second == nil:
		return first
	case first.Active() < second.Active():
		return first
	case second.Active() < first.Active():
		return second
	case rand.IntN(2) == 0:
		return first
	}
	return second
}

// rendezvous is consistent hashing by client address (highest random weight):
// each client goes to the eligible backend with the highest hash of
// (client, backend). Adding or removing one of N backends moves only the
// clients whose winner changed, about 1/N of them.
type rendezvous struct {
	backends []*Backend
}

func (r *rendezvous) pick(client netip.Addr, exclude []*Backend, now int64) *Backend {
	key := client.Unmap().As16()
	var best *Backend
	var bestScore uint64
	for _, b := range r.backends {
		if !usable(b, exclude, now) {
			continue
		}
		score := hashClient(key, b.Address)
		if best == nil || score > bestScore {
			best, bestScore = b, score
		}
	}
	return best
}

// hashClient mixes a client address and a backend address into a score with
// FNV-1a and a splitmix64 finalizer. It is fixed, not seeded per process, so
// every l4edge instance and every restart sends a client to the same backend.
func hashClient(client [16]byte, backend string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, c := range client {
		h = (h ^ uint64(c)) * prime
	}
	for i := 0; i < len(backend); i++ {
		h = (h ^ uint64(backend[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
