// Package tlsterm provides the certificates and tls.Configs of terminating
// routes: ACME through certmagic (TLS-ALPN-01 answered on the traffic port,
// HTTP-01 on tls.acme.http_listen, on-demand issuance), static files, and
// in-memory self-signed certificates.
package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/hostname"
)

// acmeTLS1 is the ALPN protocol of TLS-ALPN-01 challenges.
const acmeTLS1 = "acme-tls/1"

// CertInfo describes a certificate being served: what the admin API's
// /status, its metrics and the l4edge certs command show.
type CertInfo struct {
	// Names are the certificate's DNS names.
	Names []string `json:"names"`
	// NotAfter is when it expires.
	NotAfter time.Time `json:"not_after"`
	// Issuer is the issuer's distinguished name.
	Issuer string `json:"issuer"`
	// Source is where it comes from: acme, self_signed or files.
	Source string `json:"source"`
}

// Manager lives as long as the process: it owns the certmagic cache and
// ACME configuration, the HTTP-01 server and the self-signed certificates,
// and builds a Set for each configuration.
type Manager struct {
	log *zap.Logger

	mu         sync.Mutex
	selfSigned map[string]*tls.Certificate // by sorted name list
	acme       *acmeState                  // nil until a configuration uses ACME
	current    *Set
	storage    certmagic.Storage                 // shared storage; nil for tls.storage.file
	renewCheck time.Duration                     // certmagic's renewal check interval; 0 for its default
	onObtained atomic.Pointer[func(name string)] // see OnObtained
}

// UseStorage makes ACME keep certificates, locks and challenges in s (the
// cluster's shared storage) instead of tls.storage.file, and check for
// renewals, its own or another instance's, every minute. It must be
// called before the first Apply.
func (m *Manager) UseStorage(s certmagic.Storage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.storage, m.renewCheck = s, time.Minute
}

// NewManager returns a manager with nothing configured.
func NewManager(log *zap.Logger) *Manager {
	if log == nil {
		log = zap.NewNop()
	}
	return &Manager{log: log, selfSigned: map[string]*tls.Certificate{}}
}

// Set is the TLS side of one configuration. It is immutable.
type Set struct {
	configs     map[[2]int]*tls.Config
	acme        *acmeState
	acmeNames   map[string]bool
	onDemand    []string
	staticCerts []CertInfo
}

// Apply builds the tls.Configs of cfg's terminating routes. It is called
// after the traffic listeners are bound, so the ACME solvers find their
// ports taken and leave challenges to l4edge's own listeners. ACME
// certificates are obtained in the background: a CA that cannot be reached
// never stops l4edge from serving with the certificates it has.
func (m *Manager) Apply(ctx context.Context, cfg *config.Config) (*Set, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := &Set{configs: map[[2]int]*tls.Config{}, acmeNames: map[string]bool{}}
	var acmeNames []string
	alpnPort, alpnHost := 0, ""
	for li, l := range cfg.Listeners {
		for ri, r := range l.Routes {
			if !r.Terminates() {
				continue
			}
			path := fmt.Sprintf("listeners[%d].routes[%d].tls", li, ri)
			var names []string
			if r.Match != nil {
				names = hostname.NormalizeAll(r.Match.SNI)
			}
			tc := baseConfig(r.TLS)
			switch r.TLS.Cert {
			case config.CertSelfSigned:
				cert, err := m.selfSignedFor(append(names, "localhost"))
				if err != nil {
					return nil, fmt.Errorf("%s: self-signed certificate: %w", path, err)
				}
				tc.Certificates = []tls.Certificate{*cert}
				set.staticCerts = append(set.staticCerts, describe(cert, config.CertSelfSigned))
			case config.CertFiles:
				cert, err := tls.LoadX509KeyPair(r.TLS.CertFile, r.TLS.KeyFile)
				if err != nil {
					return nil, fmt.Errorf("%s.cert_file: %w", path, err)
				}
				tc.Certificates = []tls.Certificate{cert}
				set.staticCerts = append(set.staticCerts, describe(&cert, config.CertFiles))
			case config.CertACME:
				for _, n := range names {
					if !strings.HasPrefix(n, "*.") && !set.acmeNames[n] {
						set.acmeNames[n] = true
						acmeNames = append(acmeNames, n)
					}
				}
				if alpnPort == 0 {
					alpnHost, alpnPort = hostPort(l.Listen)
				}
			}
			set.configs[[2]int{li, ri}] = tc
		}
	}
	if len(set.acmeNames) > 0 || (cfg.TLS.ACME != nil && cfg.TLS.ACME.OnDemand != nil && alpnPort > 0) {
		if cfg.TLS.ACME == nil {
			return nil, fmt.Errorf("tls.acme: routes use cert: acme but tls.acme is not set")
		}
		st, err := m.ensureACME(cfg, alpnHost, alpnPort)
		if err != nil {
			return nil, err
		}
		set.acme = st
		if od := cfg.TLS.ACME.OnDemand; od != nil {
			set.onDemand = hostname.NormalizeAll(od.Allow)
		}
		for li, l := range cfg.Listeners {
			for ri, r := range l.Routes {
				if r.Terminates() && r.TLS.Cert == config.CertACME {
					set.configs[[2]int{li, ri}].GetCertificate = st.getCertificate
				}
			}
		}
		st.setManaged(set.acmeNames)
		slices.Sort(acmeNames)
		st.dropUnusable(ctx, acmeNames, m.log.Named("acme"))
		if err := st.magic.ManageAsync(ctx, acmeNames); err != nil {
			return nil, fmt.Errorf("tls.acme: manage %v: %w", acmeNames, err)
		}
	}
	m.current = set
	return set, nil
}

// baseConfig is the route's tls.Config with l4edge's defaults: TLS 1.2 and
// 1.3, ECDHE with AEAD suites only, post-quantum hybrid key exchange first,
// session tickets on (crypto/tls rotates their keys).
func baseConfig(rt *config.RouteTLS) *tls.Config {
	min := uint16(tls.VersionTLS12)
	if rt.MinVersion == "1.3" {
		min = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion: min,
		NextProtos: rt.ALPN,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256},
	}
}

// ServerConfig returns listener li, route ri's tls.Config, or nil.
func (s *Set) ServerConfig(li, ri int) *tls.Config { return s.configs[[2]int{li, ri}] }

// IsChallenge reports whether a ClientHello is a TLS-ALPN-01 challenge for
// a name this Set obtains over ACME.
func (s *Set) IsChallenge(sni string, alpn []string) bool {
	if s.acme == nil || len(alpn) != 1 || alpn[0] != acmeTLS1 || sni == "" {
		return false
	}
	return s.acmeNames[sni] || hostname.MatchAny(s.onDemand, sni)
}

// ServeChallenge answers a TLS-ALPN-01 challenge with certmagic's challenge
// certificate and closes conn.
func (s *Set) ServeChallenge(conn net.Conn, timeout time.Duration) error {
	defer conn.Close()
	tc := tls.Server(conn, &tls.Config{GetCertificate: s.acme.magic.GetCertificate, NextProtos: []string{acmeTLS1}})
	if timeout > 0 {
		_ = conn.SetDeadline(time.Now().Add(timeout))
	}
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls-alpn-01 challenge: %w", err)
	}
	return nil
}

// Certificates lists the certificates of the current configuration.
func (m *Manager) Certificates() []CertInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current == nil {
		return nil
	}
	out := slices.Clone(m.current.staticCerts)
	if st := m.current.acme; st != nil {
		seen := map[string]bool{}
		for name := range m.current.acmeNames {
			for _, c := range st.cache.AllMatchingCertificates(name) {
				if c.Leaf == nil || seen[c.Hash()] {
					continue
				}
				seen[c.Hash()] = true
				out = append(out, CertInfo{Names: c.Names, NotAfter: c.Leaf.NotAfter, Issuer: c.Leaf.Issuer.String(), Source: config.CertACME})
			}
		}
	}
	return out
}

// Close stops renewals and the HTTP-01 server.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.acme != nil {
		m.acme.close()
		m.acme = nil
	}
	return nil
}

func describe(c *tls.Certificate, source string) CertInfo {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return CertInfo{Source: source}
	}
	return CertInfo{Names: leaf.DNSNames, NotAfter: leaf.NotAfter, Issuer: leaf.Issuer.String(), Source: source}
}

func hostPort(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	var port int
	_, _ = fmt.Sscanf(p, "%d", &port)
	return h, port
}
