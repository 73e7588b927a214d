package tlsterm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// termConfig is one listener "l" whose one route "t" terminates TLS with
// the keys tlsKeys ("cert: self_signed") for sni (every name when none),
// loaded as l4edge loads a file: every other key has its default.
func termConfig(t *testing.T, tlsKeys string, sni ...string) *config.Config {
	t.Helper()
	match := ""
	if len(sni) > 0 {
		names, _ := json.Marshal(sni) // a JSON list is a YAML flow sequence
		match = ", match: {sni: " + string(names) + "}"
	}
	return testpeer.Config(t, `listeners: [{name: l, listen: "127.0.0.1:0", routes: [{name: t, pool: p, tls: {mode: terminate, `+tlsKeys+`}`+match+`}]}]
pools: {p: {backends: [{address: "127.0.0.1:1"}]}}
`)
}

func TestSelfSigned(t *testing.T) {
	m := NewManager(zaptest.NewLogger(t))
	defer m.Close()
	set, err := m.Apply(context.Background(), termConfig(t, "cert: self_signed", "ws.test", "*.ws.test"))
	if err != nil {
		t.Fatal(err)
	}
	tc := set.ServerConfig(0, 0)
	leaf := tc.Certificates[0].Leaf
	if !slices.Equal(leaf.DNSNames, []string{"*.ws.test", "localhost", "ws.test"}) {
		t.Fatalf("names %v", leaf.DNSNames)
	}
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key %T", leaf.PublicKey)
	}
	// The same names on reload reuse the certificate.
	set2, _ := m.Apply(context.Background(), termConfig(t, "cert: self_signed", "ws.test", "*.ws.test"))
	if set2.ServerConfig(0, 0).Certificates[0].Leaf != leaf {
		t.Fatal("a reload made a new self-signed certificate")
	}
	if set.ServerConfig(0, 1) != nil || set.IsChallenge("ws.test", []string{"acme-tls/1"}) {
		t.Fatal("unexpected config or challenge")
	}
	if infos := m.Certificates(); len(infos) != 1 || infos[0].Source != config.CertSelfSigned {
		t.Fatalf("certificates %+v", infos)
	}
}

// TLS defaults: 1.2+ only, AEAD suites only, ALPN http/1.1.
func TestDefaults(t *testing.T) {
	m := NewManager(zaptest.NewLogger(t))
	set, err := m.Apply(context.Background(), termConfig(t, "cert: self_signed"))
	if err != nil {
		t.Fatal(err)
	}
	tc := set.ServerConfig(0, 0)
	addr := testpeer.Serve(t, func(c *net.TCPConn) { _ = tls.Server(c, tc).Handshake() }).Addr()
	dial := func(c *tls.Config) (*tls.Conn, error) {
		c.ServerName, c.InsecureSkipVerify = "localhost", true
		return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, c)
	}
	c, err := dial(&tls.Config{NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if st := c.ConnectionState(); st.NegotiatedProtocol != "http/1.1" || st.Version != tls.VersionTLS13 {
		t.Fatalf("alpn %q version %x", st.NegotiatedProtocol, st.Version)
	}
	c.Close()
	if c, err := dial(&tls.Config{MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 accepted")
	}
	if c, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}); err == nil {
		c.Close()
		t.Fatal("a CBC-only TLS 1.2 client was accepted")
	}
}

// cert: files is read at every Apply, so a reload picks up a new file.
func TestFilesReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf, _ := testpeer.CertFiles(t, dir, "one.test")
	cfg := termConfig(t, fmt.Sprintf("cert: files, cert_file: %q, key_file: %q", cf, kf))
	m := NewManager(zaptest.NewLogger(t))
	set, err := m.Apply(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := set.ServerConfig(0, 0).Certificates[0]; n.Leaf == nil || n.Leaf.DNSNames[0] != "one.test" {
		t.Fatalf("first certificate %v", n.Leaf)
	}
	testpeer.CertFiles(t, dir, "two.test")
	set, err = m.Apply(context.Background(), cfg)
	if err != nil || set.ServerConfig(0, 0).Certificates[0].Leaf.DNSNames[0] != "two.test" {
		t.Fatalf("reload: %v", err)
	}
	cfg.Listeners[0].Routes[0].TLS.CertFile = filepath.Join(dir, "missing.pem")
	if _, err := m.Apply(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "listeners[0].routes[0].tls.cert_file") {
		t.Fatalf("missing file: %v", err)
	}
}

// On-demand: names outside allow are refused without asking anyone; with
// ask set, its answer decides.
func TestOnDemandDecision(t *testing.T) {
	asked := make(chan string, 4)
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := r.URL.Query().Get("domain")
		asked <- d
		if d != "good.tenants.test" {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer ask.Close()
	dec := decision(&config.OnDemand{Allow: []string{"*.tenants.test"}, Ask: ask.URL}, zaptest.NewLogger(t))
	ctx := context.Background()
	if err := dec(ctx, "evil.example.com"); err == nil {
		t.Fatal("a name outside allow was accepted")
	}
	if len(asked) != 0 {
		t.Fatal("ask was consulted for a name outside allow")
	}
	if err := dec(ctx, "good.tenants.test"); err != nil {
		t.Fatal(err)
	}
	if err := dec(ctx, "bad.tenants.test"); err == nil {
		t.Fatal("ask said no, but the name was accepted")
	}
	if err := dec(ctx, "a.b.tenants.test"); err == nil {
		t.Fatal("a wildcard matched two labels")
	}
}
