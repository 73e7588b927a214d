package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/hostname"
)

// acmeState is certmagic's side: one cache and config for the process (a
// change of ACME settings on reload builds a new one), and the HTTP-01
// server on tls.acme.http_listen.
type acmeState struct {
	settings config.ACME
	storage  config.Storage
	alpnPort int

	cache    *certmagic.Cache
	magic    *certmagic.Config // the names routes list: obtained at start
	onDemand *certmagic.Config // every other name, per on_demand; nil without it
	issuer   *certmagic.ACMEIssuer
	managed  atomic.Pointer[map[string]bool]
	httpSrv  *http.Server
	httpDone chan struct{}
}

// ensureACME returns the ACME state for cfg, building it when the settings
// changed. alpnHost:alpnPort is a traffic listener already bound: certmagic's
// TLS-ALPN-01 solver tries to bind it, finds it in use, and leaves the
// challenge to l4edge's listener (IsChallenge/ServeChallenge).
func (m *Manager) ensureACME(cfg *config.Config, alpnHost string, alpnPort int) (*acmeState, error) {
	a := *cfg.TLS.ACME
	if cur := m.acme; cur != nil && reflect.DeepEqual(cur.settings, a) && reflect.DeepEqual(cur.storage, cfg.TLS.Storage) && cur.alpnPort == alpnPort {
		return cur, nil
	}
	storage := m.storage
	if storage == nil {
		if cfg.TLS.Storage.Redis != nil {
			return nil, errors.New("tls.storage.redis: switching from file to Redis storage takes a restart")
		}
		storage = &certmagic.FileStorage{Path: cfg.TLS.Storage.File}
	}
	st := &acmeState{settings: a, storage: cfg.TLS.Storage, alpnPort: alpnPort}
	var roots *x509.CertPool
	if len(a.CARoots) > 0 {
		roots = x509.NewCertPool()
		for i, f := range a.CARoots {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("tls.acme.ca_roots[%d]: %w", i, err)
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.acme.ca_roots[%d]: %s holds no PEM certificate", i, f)
			}
		}
	}
	log := m.log.Named("acme")
	st.managed.Store(&map[string]bool{})
	st.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: st.configForCert,
		Logger:           log,
		// With shared storage, a certificate another instance renewed is
		// picked up at the next check.
		RenewCheckInterval: m.renewCheck,
	})
	st.magic = certmagic.New(st.cache, certmagic.Config{Storage: storage, Logger: log, OnEvent: m.emit})
	httpHost, httpPort := hostPort(a.HTTPListen)
	template := certmagic.ACMEIssuer{
		CA:                      a.CA,
		Email:                   a.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableTLSALPNChallenge: !slices.Contains(a.Challenges, "tls-alpn-01") || alpnPort == 0,
		DisableHTTPChallenge:    !slices.Contains(a.Challenges, "http-01") || a.HTTPListen == "",
		AltTLSALPNPort:          alpnPort,
		AltHTTPPort:             httpPort,
		ListenHost:              alpnHost,
		Logger:                  log,
	}
	st.issuer = certmagic.NewACMEIssuer(st.magic, template)
	st.magic.Issuers = []certmagic.Issuer{st.issuer}
	if od := a.OnDemand; od != nil {
		st.onDemand = certmagic.New(st.cache, certmagic.Config{Storage: storage, Logger: log, OnEvent: m.emit,
			OnDemand: &certmagic.OnDemandConfig{DecisionFunc: decision(od, log)}})
		st.onDemand.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(st.onDemand, template)}
	}
	if a.HTTPListen != "" {
		if err := st.startHTTP(a.HTTPListen, httpHost, log); err != nil {
			st.cache.Stop()
			return nil, err
		}
	}
	if old := m.acme; old != nil {
		old.close()
	}
	m.acme = st
	return st, nil
}

// setManaged records the names routes list: they are obtained at start
// and never go through the on-demand decision.
func (st *acmeState) setManaged(names map[string]bool) { st.managed.Store(&names) }

func (st *acmeState) isManaged(name string) bool {
	return (*st.managed.Load())[hostname.Normalize(name)]
}

// getCertificate serves a listed name from the managed configuration and
// any other from the on-demand one, whose decision governs only those.
func (st *acmeState) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if st.onDemand == nil || st.isManaged(hello.ServerName) {
		return st.magic.GetCertificate(hello)
	}
	return st.onDemand.GetCertificate(hello)
}

// configForCert is the configuration that maintains a cached certificate.
func (st *acmeState) configForCert(c certmagic.Certificate) (*certmagic.Config, error) {
	if st.onDemand == nil {
		return st.magic, nil
	}
	for _, n := range c.Names {
		if !st.isManaged(n) {
			return st.onDemand, nil
		}
	}
	return st.magic, nil
}

// startHTTP serves HTTP-01 challenges on addr and redirects every other
// request to https with 308.
func (st *acmeState) startHTTP(addr, _ string, log *zap.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("tls.acme.http_listen: %w", err)
	}
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
	})
	st.httpSrv = &http.Server{
		Handler:           st.issuer.HTTPChallengeHandler(redirect),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	st.httpDone = make(chan struct{})
	go func() {
		defer close(st.httpDone)
		if err := st.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http-01 server stopped", zap.String("address", addr), zap.Error(err))
		}
	}()
	return nil
}

func (st *acmeState) close() {
	if st.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = st.httpSrv.Shutdown(ctx)
		cancel()
		<-st.httpDone
	}
	st.cache.Stop()
}

// decision allows on-demand issuance only for names matching allow, and
// when ask is set, only if it answers 200 for ?domain=NAME. A refused name
// never reaches the CA.
func decision(od *config.OnDemand, log *zap.Logger) func(context.Context, string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	allow := hostname.NormalizeAll(od.Allow)
	return func(ctx context.Context, name string) error {
		if !hostname.MatchAny(allow, hostname.Normalize(name)) {
			log.Warn("on-demand certificate refused: name not allowed", zap.String("name", name))
			return fmt.Errorf("on-demand: %q is not allowed", name)
		}
		if od.Ask == "" {
			return nil
		}
		u, err := url.Parse(od.Ask)
		if err != nil {
			return err
		}
		q := u.Query()
		q.Set("domain", name)
		u.RawQuery = q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("on-demand ask %s: %w", od.Ask, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			log.Warn("on-demand certificate refused by ask", zap.String("name", name), zap.Int("status", resp.StatusCode))
			return fmt.Errorf("on-demand: ask answered %d for %q", resp.StatusCode, name)
		}
		return nil
	}
}
