package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/l4"
	"github.com/l4edge/l4edge/tlsterm"
)

// Sources are the running state the admin endpoints read.
type Sources struct {
	Listeners   func() []l4.ListenerStats
	Connections func() []l4.ConnInfo
	// Runtime is the configuration and pools being served; nil until the
	// listeners are bound.
	Runtime      func() *l4.Runtime
	Certificates func() []tlsterm.CertInfo
	Reload       func(ctx context.Context) error
	Ready        func() error // nil when ready
	// Storage and Cluster feed /status; Cluster is nil without shared storage.
	Storage func() StorageStatus
	Cluster func() *ClusterStatus
	// Drain applies a drain (on) or enable of one backend in a scope
	// (local or cluster); nil drains the backend locally only.
	Drain func(pool, backend, scope string, on bool) error
}

// Server is the admin HTTP listener.
type Server struct {
	addr    string
	src     Sources
	metrics *Metrics
	log     *zap.Logger
	http    *http.Server
	ln      net.Listener
	history *history
	done    chan struct{} // closed by Shutdown: ends the sampler and event streams
}

// NewServer prepares the admin API on cfg.Listen, which validation has
// checked (config.IsLoopback); a non-loopback address is logged as a
// warning.
func NewServer(cfg config.Admin, src Sources, m *Metrics, log *zap.Logger) (*Server, error) {
	if !config.IsLoopback(cfg.Listen) {
		log.Warn("admin API exposed beyond loopback", zap.String("address", cfg.Listen))
	}
	s := &Server{addr: cfg.Listen, src: src, metrics: m, log: log,
		history: newHistory(historyEvery, historySize), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /status/history", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.history.doc()) })
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("POST /pools/{pool}/backends/{address}/drain", s.sameOrigin(s.setDrain(true)))
	mux.HandleFunc("POST /pools/{pool}/backends/{address}/enable", s.sameOrigin(s.setDrain(false)))
	mux.HandleFunc("POST /reload", s.sameOrigin(s.reload))
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	return s, nil
}

// Start binds the admin address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	s.ln = ln
	go s.sample(s.done)
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", zap.Error(err))
		}
	}()
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown ends the event streams and the sampler, then stops the admin server.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	return s.http.Shutdown(ctx)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.src.Ready != nil {
		if err := s.src.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (s *Server) setDrain(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, addr := r.PathValue("pool"), r.PathValue("address")
		p := s.pools()[name]
		if p == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("unknown pool %q", name)})
			return
		}
		b := p.Backend(addr)
		if b == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("pool %q has no backend %q", name, addr)})
			return
		}
		scope, ok := drainScope(w, r)
		if !ok {
			return
		}
		if s.src.Drain == nil {
			if scope == ScopeCluster {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": ErrNoCluster.Error()})
				return
			}
			b.SetDraining(on)
		} else if err := s.src.Drain(name, addr, scope, on); err != nil {
			code := http.StatusServiceUnavailable
			if errors.Is(err, ErrNoCluster) {
				code = http.StatusBadRequest
			}
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		s.log.Info("backend drain changed", zap.String("pool", name), zap.String("backend", addr), zap.Bool("draining", on), zap.String("scope", scope))
		if scope == ScopeCluster {
			writeJSON(w, http.StatusOK, struct {
				BackendStatus
				Scope string `json:"scope"`
			}{backendStatus(b.Snapshot()), scope})
			return
		}
		writeJSON(w, http.StatusOK, backendStatus(b.Snapshot()))
	}
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.src.Reload == nil {
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "reload not available"})
		return
	}
	if err := s.src.Reload(r.Context()); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"result": "failure", "errors": config.ErrorStrings(err)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"result": "success"})
}

// BackendStatus is one backend in /status.
type BackendStatus struct {
	Address   string     `json:"address"`
	Weight    int        `json:"weight"`
	State     string     `json:"state"`
	Active    int64      `json:"active"`
	Total     uint64     `json:"total"`
	Failures  uint64     `json:"failures"`
	LastCheck *time.Time `json:"last_check"`
	LastError string     `json:"last_error"`
	// BytesToBackend and BytesToClient include open connections.
	BytesToBackend float64 `json:"bytes_to_backend"`
	BytesToClient  float64 `json:"bytes_to_client"`
}

func backendStatus(s balancer.Snapshot) BackendStatus {
	bs := BackendStatus{Address: s.Address, Weight: s.Weight, State: s.State.String(), Active: s.Active,
		Total: s.Total, Failures: s.Failures, LastError: s.LastError}
	if !s.LastCheck.IsZero() {
		t := s.LastCheck
		bs.LastCheck = &t
	}
	return bs
}

// status answers GET /status.
func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.statusDoc())
}

// statusDoc is the document of GET /status, also streamed to the page.
func (s *Server) statusDoc() StatusDoc {
	type (
		route    = RouteStatus
		listener = ListenerStatus
		pool     = PoolStatus
	)
	out := StatusDoc{Listeners: []listener{}, Pools: []pool{}, Certificates: []tlsterm.CertInfo{}}
	if s.src.Storage != nil {
		st := s.src.Storage()
		out.Storage = &st
	}
	if s.src.Cluster != nil {
		out.Cluster = s.src.Cluster()
	}

	open := s.src.Connections()
	active := map[[2]string]int{}
	for _, c := range open {
		active[[2]string{c.Listener, c.Route}]++
	}
	stats := map[string]l4.ListenerStats{}
	for _, st := range s.src.Listeners() {
		stats[st.Name] = st
	}
	rt := s.src.runtime()
	if rt == nil {
		return out
	}
	for _, lc := range rt.Config.Listeners {
		st := stats[lc.Name]
		l := listener{Name: lc.Name, Address: st.Address, Accepted: st.Accepted, Active: st.Active, Refused: st.Refused}
		for _, rc := range lc.Routes {
			r := route{Name: rc.Name, Pool: rc.Pool, TLS: config.ModePassthrough, Active: active[[2]string{lc.Name, rc.Name}]}
			if rc.TLS != nil {
				r.TLS = rc.TLS.Mode
			}
			if rc.Match != nil {
				r.SNI, r.ALPN = rc.Match.SNI, rc.Match.ALPN
			}
			l.Routes = append(l.Routes, r)
		}
		out.Listeners = append(out.Listeners, l)
	}
	pools := rt.Pools
	names := make([]string, 0, len(pools))
	for n := range pools {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := pool{Name: n, Policy: pools[n].Config.Policy, Panic: pools[n].InPanic()}
		for _, b := range pools[n].Backends() {
			bs := backendStatus(b.Snapshot())
			bs.BytesToBackend, bs.BytesToClient = s.metrics.BackendBytes(open, n, b.Address)
			p.Backends = append(p.Backends, bs)
		}
		out.Pools = append(out.Pools, p)
	}
	if s.src.Certificates != nil {
		out.Certificates = append(out.Certificates, s.src.Certificates()...)
	}
	return out
}

// runtime is the runtime being served, or nil.
func (src Sources) runtime() *l4.Runtime {
	if src.Runtime == nil {
		return nil
	}
	return src.Runtime()
}

// pools are the pools being served by name; none before the listeners are bound.
func (s *Server) pools() map[string]*balancer.Pool {
	if rt := s.src.runtime(); rt != nil {
		return rt.Pools
	}
	return nil
}
