package testpeer

import (
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer/testcert"
)

// certLifetime is how long a test certificate is valid: past any test.
const certLifetime = 24 * time.Hour

// Cert makes a self-signed certificate for hosts (DNS names, "*." wildcards
// or IP addresses; see testcert.New) whose Pool trusts it.
func Cert(t testing.TB, hosts ...string) *testcert.Cert {
	t.Helper()
	c, err := testcert.New(certLifetime, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CertFiles makes a Cert for hosts and writes it as cert.pem and key.pem
// (PKCS#8) into dir, replacing files of those names; it returns their
// paths and the certificate.
func CertFiles(t testing.TB, dir string, hosts ...string) (certFile, keyFile string, c *testcert.Cert) {
	t.Helper()
	c = Cert(t, hosts...)
	certFile, keyFile, err := c.WriteFiles(dir, "cert.pem", "key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, c
}
