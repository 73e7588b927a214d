//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/l4edge/l4edge/cluster"
	"github.com/l4edge/l4edge/tlsterm/redisstore"
)

// servedSerial is the serial of the certificate addr serves for name.
func servedSerial(t *testing.T, p *pebble, addr, name string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: p.IssuerRoots})
	if err != nil {
		t.Fatalf("%s %s: %v", addr, name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// A certificate renewed by one member is served by the others at once:
// a fourth member (certmagic on the same Redis, announcing through the
// cluster package) renews it, and the three instances switch to it.
func TestClusterRenewalPickedUp(t *testing.T) {
	p, tlsPort, srv := pebbleAndRedis(t)
	const name = "renew.cluster.test"
	addrs, _, _ := cluster3(t, p, tlsPort, srv.Addr, []string{name}, "")
	waitAll(t, p, addrs, []string{name}, 60*time.Second)
	before := servedSerial(t, p, addrs[0], name)

	store := redisstore.New(redisstore.Options{Address: srv.Addr})
	defer store.Close()
	member := cluster.Start(cluster.Options{Client: store.Client(), Prefix: store.Prefix(), ID: "renewer",
		ConfigHash: func() string { return "" }, Certificates: func() int { return 0 }, Apply: func(string, string, bool) {}})
	defer member.Close()
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil }})
	defer cache.Stop()
	magic = certmagic.New(cache, certmagic.Config{Storage: store, OnEvent: func(_ context.Context, event string, data map[string]any) error {
		if event == "cert_obtained" {
			member.AnnounceCert(data["identifier"].(string))
		}
		return nil
	}})
	pem, err := os.ReadFile(p.RootsFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{CA: p.DirectoryURL, Email: "ops@example.test",
		Agreed: true, TrustedRoots: roots, DisableHTTPChallenge: true, AltTLSALPNPort: tlsPort, ListenHost: "127.0.0.1"})}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := magic.RenewCertSync(ctx, name, true); err != nil {
		t.Fatalf("renewal by the fourth member: %v", err)
	}
	renewed := time.Now()
	for _, a := range addrs {
		for servedSerial(t, p, a, name) == before {
			if time.Since(renewed) > 10*time.Second {
				t.Fatalf("%s still serves the old certificate 10s after the renewal", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("all 3 instances serve the renewed certificate %s after the renewal", time.Since(renewed).Round(time.Millisecond))
	if got := p.ordered(); len(got) != 2 {
		t.Fatalf("orders %v: want the first and the renewal", got)
	}
}
