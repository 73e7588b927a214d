package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// writeTestCert writes a self-signed certificate for localhost and its key
// as PEM files and returns their paths and a pool trusting it.
func writeTestCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

func TestTLSEcho(t *testing.T) {
	certFile, keyFile, pool := writeTestCert(t)
	if _, err := listenOn("127.0.0.1:0", certFile, ""); err == nil || !strings.Contains(err.Error(), "-key") {
		t.Fatalf("cert without key: %v", err)
	}
	ln, err := listenOn("127.0.0.1:0", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, ln, "tls1")
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	c, resp, err := websocket.Dial(ctx, "wss://"+addr+"/", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer c.CloseNow()
	if resp.Header.Get("X-Backend-Name") != "tls1" {
		t.Fatalf("X-Backend-Name %q", resp.Header.Get("X-Backend-Name"))
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("whoami")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "tls1" {
		t.Fatalf("whoami over TLS: %q %v", got, err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")

	// Raw bytes inside TLS are echoed too.
	rc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_ = rc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.Write([]byte("\x00raw bytes")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "\x00raw bytes" {
		t.Fatalf("raw echo over TLS: %q %v", buf, err)
	}
}
