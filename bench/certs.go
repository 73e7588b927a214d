//go:build linux

package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer/testcert"
)

// certFiles are the PEM files of the benchmark certificate.
type certFiles struct {
	// Cert is the certificate alone, Key the PKCS#8 key alone.
	Cert, Key string
	// Combined is certificate then key in one file (HAProxy's crt).
	Combined string
	// Pool trusts the certificate; clients verify against it.
	Pool *x509.CertPool
}

// benchServerName is the name the certificate covers and clients send as SNI.
const benchServerName = "localhost"

// writeCert generates a self-signed ECDSA P-256 certificate for localhost
// and 127.0.0.1 (the tests' testcert) and writes it into dir.
func writeCert(dir string) (certFiles, error) {
	c, err := testcert.New(48*time.Hour, benchServerName, "127.0.0.1")
	if err != nil {
		return certFiles{}, err
	}
	cf := certFiles{Combined: filepath.Join(dir, "combined.pem"), Pool: c.Pool}
	if cf.Cert, cf.Key, err = c.WriteFiles(dir, "cert.pem", "key.pem"); err != nil {
		return certFiles{}, err
	}
	if err := os.WriteFile(cf.Combined, append(append([]byte{}, c.CertPEM...), c.KeyPEM...), 0o600); err != nil {
		return certFiles{}, fmt.Errorf("write %s: %w", cf.Combined, err)
	}
	return cf, nil
}

// clientTLSConfig is what every TLS benchmark client uses: TLS 1.3 only,
// X25519 only (the key exchange all three proxies share), no session
// resumption, and the benchmark certificate verified.
func clientTLSConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{
		RootCAs:                pool,
		ServerName:             benchServerName,
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		CurvePreferences:       []tls.CurveID{tls.X25519},
		SessionTicketsDisabled: true,
		ClientSessionCache:     nil,
	}
}
