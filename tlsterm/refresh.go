package tlsterm

import (
	"context"
	"slices"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/internal/hostname"
)

// OnObtained makes f be called with the name of every certificate this
// instance obtains or renews from now on (to tell the other members of a
// cluster).
func (m *Manager) OnObtained(f func(name string)) { m.onObtained.Store(&f) }

// emit is certmagic's event hook.
func (m *Manager) emit(_ context.Context, event string, data map[string]any) error {
	f := m.onObtained.Load()
	if event != "cert_obtained" || f == nil {
		return nil
	}
	if name, ok := data["identifier"].(string); ok {
		(*f)(name)
	}
	return nil
}

// Refresh loads name's certificate from storage and, when it differs from
// the one in memory (another member renewed it), serves it instead. It
// reports whether it replaced one.
func (m *Manager) Refresh(ctx context.Context, name string) (bool, error) {
	m.mu.Lock()
	set := m.current
	m.mu.Unlock()
	name = hostname.Normalize(name)
	if set == nil || set.acme == nil {
		return false, nil
	}
	st := set.acme
	var held []string
	for _, c := range st.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			held = append(held, c.Hash())
		}
	}
	if len(held) == 0 {
		return false, nil // not served here: loaded when first asked for
	}
	cfg := st.magic
	if st.onDemand != nil && !st.isManaged(name) {
		cfg = st.onDemand
	}
	cert, err := cfg.CacheManagedCertificate(ctx, name)
	if err != nil {
		return false, err
	}
	stale := slices.DeleteFunc(held, func(h string) bool { return h == cert.Hash() })
	if len(stale) == 0 {
		return false, nil
	}
	st.cache.Remove(stale)
	m.log.Info("certificate renewed by another member: now serving it", zap.String("name", name))
	return true, nil
}
