package tlsterm

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// WriteBack stores each certificate this instance holds in memory for the
// names its routes list, when storage lacks it (a shared Redis that came
// back empty), so that no valid certificate is ordered again. It returns
// how many it wrote.
func (m *Manager) WriteBack(ctx context.Context) (int, error) {
	m.mu.Lock()
	set := m.current
	m.mu.Unlock()
	if set == nil || set.acme == nil {
		return 0, nil
	}
	st := set.acme
	storage, issuerKey := st.magic.Storage, st.issuer.IssuerKey()
	seen, written := map[string]bool{}, 0
	for name := range set.acmeNames {
		for _, c := range st.cache.AllMatchingCertificates(name) {
			if c.Leaf == nil || seen[c.Hash()] || len(c.Certificate.Certificate) == 0 {
				continue
			}
			seen[c.Hash()] = true
			res := certmagic.CertificateResource{SANs: c.Names}
			key := res.NamesKey()
			if storage.Exists(ctx, certmagic.StorageKeys.SiteCert(issuerKey, key)) {
				continue
			}
			if err := writeCert(ctx, storage, issuerKey, key, c, res); err != nil {
				return written, err
			}
			written++
		}
	}
	if written > 0 {
		m.log.Info("certificates written back to storage", zap.Int("certificates", written))
	}
	return written, nil
}

func writeCert(ctx context.Context, storage certmagic.Storage, issuerKey, key string, c certmagic.Certificate, res certmagic.CertificateResource) error {
	var chain []byte
	for _, der := range c.Certificate.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyPEM, err := certmagic.PEMEncodePrivateKey(c.Certificate.PrivateKey)
	if err != nil {
		return fmt.Errorf("write back %s: private key: %w", key, err)
	}
	meta, err := json.MarshalIndent(res, "", "\t")
	if err != nil {
		return err
	}
	// The certificate last: its presence means the set is complete.
	for _, kv := range []struct {
		k string
		v []byte
	}{
		{certmagic.StorageKeys.SitePrivateKey(issuerKey, key), keyPEM},
		{certmagic.StorageKeys.SiteMeta(issuerKey, key), meta},
		{certmagic.StorageKeys.SiteCert(issuerKey, key), chain},
	} {
		if err := storage.Store(ctx, kv.k, kv.v); err != nil {
			return fmt.Errorf("write back %s: %w", key, err)
		}
	}
	return nil
}
