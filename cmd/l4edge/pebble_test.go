//go:build linux

package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// pebble is a real ACME CA (Let's Encrypt's Pebble) in the test process:
// its wfe behind httptest's TLS server, its va validating challenges on
// the given loopback ports, names resolved to 127.0.0.1 by a tiny DNS server.
type pebble struct {
	DirectoryURL string
	RootsFile    string         // PEM of the directory server's certificate, for tls.acme.ca_roots
	IssuerRoots  *x509.CertPool // roots of the certificates Pebble issues
	HTTPPort     int            // where it validates HTTP-01 (on 127.0.0.1)

	mu     sync.Mutex
	orders []string // names of every new-order request received
	// serve runs one request at a time: Pebble's in-memory store can
	// deadlock (its store and order locks taken in both orders) under the
	// concurrent orders of several l4edge instances.
	serve sync.Mutex
}

func startPebble(t *testing.T, httpPort, tlsPort int) *pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	resolver := startDNS(t)
	logger := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, tlsPort, false, resolver, store)
	front := wfe.New(logger, store, validator, authority, nil, false, false, 0, 0)
	p := &pebble{IssuerRoots: x509.NewCertPool(), HTTPPort: httpPort}
	srv := httptest.NewTLSServer(p.recordOrders(front.Handler()))
	t.Cleanup(srv.Close)
	p.DirectoryURL = srv.URL + "/dir"
	p.RootsFile = filepath.Join(t.TempDir(), "pebble-wfe.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p.RootsFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range authority.GetNumberOfRootCerts() {
		p.IssuerRoots.AddCert(authority.GetRootCert(i).Cert)
	}
	return p
}

// recordOrders notes the identifiers of every new-order request.
func (p *pebble) recordOrders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/order-plz" && r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var jws struct{ Payload string }
			var order struct{ Identifiers []struct{ Value string } }
			if json.Unmarshal(body, &jws) == nil {
				if raw, err := base64.RawURLEncoding.DecodeString(jws.Payload); err == nil && json.Unmarshal(raw, &order) == nil {
					p.mu.Lock()
					for _, id := range order.Identifiers {
						p.orders = append(p.orders, id.Value)
					}
					p.mu.Unlock()
				}
			}
		}
		p.serve.Lock()
		defer p.serve.Unlock()
		next.ServeHTTP(w, r)
	})
}

// ordered returns the names of all orders received so far.
func (p *pebble) ordered() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.orders...)
}

// startDNS answers A 127.0.0.1 for every name (and nothing for AAAA) on
// UDP and TCP, and returns its address.
func startDNS(t *testing.T) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})
	// UDP and TCP on the same port number: retry when the number is taken.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ln == nil; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if attempt == 20 {
				t.Fatal(err)
			}
		}
	}
	udp := &dns.Server{PacketConn: pc, Handler: handler}
	tcp := &dns.Server{Listener: ln, Handler: handler}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return pc.LocalAddr().String()
}
