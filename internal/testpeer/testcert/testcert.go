// Package testcert makes self-signed certificates for tests and the
// benchmark: one ECDSA P-256 key, a certificate that is its own CA for the
// names and addresses asked for, and a pool that trusts it.
//
// It imports nothing of package testing, so the bench binary can use it;
// tests call it through testpeer.Cert and testpeer.CertFiles.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Cert is a self-signed certificate and its key, in memory and as PEM.
type Cert struct {
	// TLS is the certificate with its key and parsed Leaf, for a tls.Config.
	TLS tls.Certificate
	// Pool trusts the certificate; clients verify against it.
	Pool *x509.CertPool
	// CertPEM is the certificate, KeyPEM the PKCS#8 key, each PEM-encoded.
	CertPEM, KeyPEM []byte
}

// New makes a certificate for hosts: DNS names (a leading "*." is a
// wildcard) or IP addresses; the first host is also the subject's common
// name. It is valid from an hour ago for lifetime, for server
// authentication, and signs itself (it is a CA), so Pool trusts it.
func New(lifetime time.Duration, hosts ...string) (*Cert, error) {
	if len(hosts) == 0 {
		return nil, errors.New("testcert: a certificate needs at least one host name or address")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testcert: generate ECDSA P-256 key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("testcert: generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testcert: create certificate for %v: %w", hosts, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testcert: parse the certificate just made: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testcert: marshal key: %w", err)
	}
	c := &Cert{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Pool:    x509.NewCertPool(),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	c.Pool.AddCert(leaf)
	return c, nil
}

// WriteFiles writes the certificate and the key as certName and keyName in
// dir (mode 0600, replacing files of those names) and returns their paths.
func (c *Cert) WriteFiles(dir, certName, keyName string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, certName), filepath.Join(dir, keyName)
	for path, data := range map[string][]byte{certFile: c.CertPEM, keyFile: c.KeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return "", "", fmt.Errorf("testcert: write %s: %w", path, err)
		}
	}
	return certFile, keyFile, nil
}
