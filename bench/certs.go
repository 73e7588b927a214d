//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
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
// and 127.0.0.1 and writes it into dir.
func writeCert(dir string) (certFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certFiles{}, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return certFiles{}, fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: benchServerName},
		DNSNames:              []string{benchServerName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return certFiles{}, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return certFiles{}, fmt.Errorf("marshal key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	cf := certFiles{
		Cert:     filepath.Join(dir, "cert.pem"),
		Key:      filepath.Join(dir, "key.pem"),
		Combined: filepath.Join(dir, "combined.pem"),
		Pool:     x509.NewCertPool(),
	}
	files := map[string][]byte{
		cf.Cert:     certPEM,
		cf.Key:      keyPEM,
		cf.Combined: append(append([]byte{}, certPEM...), keyPEM...),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return certFiles{}, fmt.Errorf("write %s: %w", path, err)
		}
	}
	cf.Pool.AppendCertsFromPEM(certPEM)
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
