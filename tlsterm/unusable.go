package tlsterm

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// dropUnusable removes the stored certificate of each name that is not
// in memory yet and whose stored certificate or key cannot be used (bytes
// that are no PEM, a key that does not match, a value of the wrong kind),
// so that certmagic obtains a new one instead of failing to load it. A
// storage that cannot be reached is left alone.
func (st *acmeState) dropUnusable(ctx context.Context, names []string, log *zap.Logger) {
	storage, issuerKey := st.magic.Storage, st.issuer.IssuerKey()
	for _, name := range names {
		if len(st.cache.AllMatchingCertificates(name)) > 0 {
			continue
		}
		certPEM, cerr := storage.Load(ctx, certmagic.StorageKeys.SiteCert(issuerKey, name))
		if errors.Is(cerr, fs.ErrNotExist) {
			continue
		}
		keyPEM, kerr := storage.Load(ctx, certmagic.StorageKeys.SitePrivateKey(issuerKey, name))
		var cause error
		switch {
		case errors.Is(cerr, fs.ErrInvalid):
			cause = cerr
		case errors.Is(kerr, fs.ErrInvalid):
			cause = kerr
		case cerr != nil || (kerr != nil && !errors.Is(kerr, fs.ErrNotExist)):
			return // storage unreachable: do not wait on it for every name
		case kerr != nil:
			cause = kerr // a certificate without its key
		default:
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err == nil {
				continue
			} else {
				cause = err
			}
		}
		log.Warn("stored certificate unusable: removing it to obtain a new one", zap.String("name", name), zap.Error(cause))
		if err := storage.Delete(ctx, certmagic.StorageKeys.CertsSitePrefix(issuerKey, name)); err != nil {
			log.Error("removing an unusable stored certificate failed", zap.String("name", name), zap.Error(err))
		}
	}
}
