// Package admin serves l4edge's operator endpoints on the admin address:
// health, readiness, status, Prometheus metrics, backend drain and reload.
// It reads snapshots of the running state and never reaches into a
// connection.
package admin

import (
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4"
	"github.com/l4edge/l4edge/l4/closereason"
)

// Metrics holds every metric the README lists in a registry of its own. Label
// sets are bounded: listeners, routes, pools, backends, results; never
// client addresses.
type Metrics struct {
	reg *prometheus.Registry
	src Sources

	conns      *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	dialErrors *prometheus.CounterVec
	checks     *prometheus.CounterVec
	handshakes *prometheus.CounterVec
	hsSeconds  *prometheus.HistogramVec
	reloads    *prometheus.CounterVec
	cluster    clusterMetrics

	mu       sync.Mutex
	finished map[bytesKey]float64   // bytes of finished connections
	byListen map[string]float64     // bytes of finished connections by listener, both ways
	live     map[uint64]liveCounter // reported bytes of open connections, by connection ID
}

type bytesKey struct{ pool, backend, direction string }

type liveCounter struct {
	listener          string
	pool, backend     string
	toBackend, toClnt float64
}

// NewMetrics registers every metric, reading live gauges from src at scrape time.
func NewMetrics(src Sources) *Metrics {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		src:      src,
		finished: map[bytesKey]float64{},
		byListen: map[string]float64{},
		live:     map[uint64]liveCounter{},
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l4edge_connections_total",
			Help: "Finished connections by listener, route and close reason."}, []string{"listener", "route", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "l4edge_connection_duration_seconds",
			Help:    "Connection durations.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, []string{"listener", "route"}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l4edge_backend_dial_errors_total",
			Help: "Connections that failed to reach a backend."}, []string{"pool", "backend"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l4edge_health_checks_total",
			Help: "Active health checks by result."}, []string{"pool", "backend", "result"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l4edge_tls_handshakes_total",
			Help: "Terminating TLS handshakes by result."}, []string{"listener", "route", "result"}),
		hsSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "l4edge_tls_handshake_seconds",
			Help: "Terminating TLS handshake durations.", Buckets: prometheus.DefBuckets}, []string{"listener"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l4edge_config_reloads_total",
			Help: "Configuration reloads by result."}, []string{"result"}),
	}
	m.reg.MustRegister(m.conns, m.duration, m.dialErrors, m.checks, m.handshakes, m.hsSeconds, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &liveCollector{m})
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	m.registerCluster()
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// ConnectionDone counts a finished connection.
func (m *Metrics) ConnectionDone(rec *l4.Record) {
	m.conns.WithLabelValues(rec.Listener, rec.Route, string(rec.Close)).Inc()
	if rec.Route != "" {
		m.duration.WithLabelValues(rec.Listener, rec.Route).Observe(rec.Duration.Seconds())
	}
	if rec.Close == closereason.DialFailed {
		m.dialErrors.WithLabelValues(rec.Pool, rec.Backend).Inc()
	}
	if rec.TLS == l4.TLSTerminate && rec.Close != closereason.ACMEChallenge {
		result := "ok"
		if rec.Close == closereason.HandshakeFailed {
			result = "failed"
		}
		m.handshakes.WithLabelValues(rec.Listener, rec.Route, result).Inc()
	}
	if rec.Backend == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	lc := m.live[rec.ID]
	delete(m.live, rec.ID)
	// A counter never goes back: take what was already reported if larger.
	toBackend, toClient := max(float64(rec.BytesToBackend), lc.toBackend), max(float64(rec.BytesToClient), lc.toClnt)
	m.finished[bytesKey{rec.Pool, rec.Backend, "to_backend"}] += toBackend
	m.finished[bytesKey{rec.Pool, rec.Backend, "to_client"}] += toClient
	m.byListen[rec.Listener] += toBackend + toClient
}

// HealthChecked counts one active health check.
func (m *Metrics) HealthChecked(pool, backend string, err error) {
	result := "pass"
	if err != nil {
		result = "fail"
	}
	m.checks.WithLabelValues(pool, backend, result).Inc()
}

// Handshake records a terminating handshake's duration.
func (m *Metrics) Handshake(listener string, d time.Duration) {
	m.hsSeconds.WithLabelValues(listener).Observe(d.Seconds())
}

// Reloaded counts a reload attempt.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
	} else {
		m.reloads.WithLabelValues("failure").Inc()
	}
}

// liveCollector computes gauges, and bytes including open connections, at
// scrape time: a long-lived WebSocket's traffic shows while it is open.
type liveCollector struct{ m *Metrics }

var (
	descActive        = prometheus.NewDesc("l4edge_connections_active", "Open routed connections.", []string{"listener", "route"}, nil)
	descBytes         = prometheus.NewDesc("l4edge_bytes_total", "Bytes relayed.", []string{"pool", "backend", "direction"}, nil)
	descBackendUp     = prometheus.NewDesc("l4edge_backend_up", "1 when the backend is healthy.", []string{"pool", "backend"}, nil)
	descBackendActive = prometheus.NewDesc("l4edge_backend_connections_active", "Open connections per backend.", []string{"pool", "backend"}, nil)
	descPoolPanic     = prometheus.NewDesc("l4edge_pool_panic", "1 while no backend of the pool is healthy and the passively failed are tried anyway.", []string{"pool"}, nil)
	descCertExpiry    = prometheus.NewDesc("l4edge_certificate_expiry_timestamp_seconds", "Certificate expiry.", []string{"name"}, nil)
)

// Describe sends the descriptors of the scrape-time metrics.
func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descBytes, descBackendUp, descBackendActive, descPoolPanic, descCertExpiry} {
		ch <- d
	}
}

// Collect reads the live sources.
func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	active := map[[2]string]float64{}
	var open []l4.ConnInfo
	if m.src.Connections != nil {
		open = m.src.Connections()
	}
	totals := m.byteTotals(open)
	for _, ci := range open {
		active[[2]string{ci.Listener, ci.Route}]++
	}
	for k, v := range active {
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, v, k[0], k[1])
	}
	for k, v := range totals {
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, v, k.pool, k.backend, k.direction)
	}
	c.collectBackends(ch)
}

// byteTotals returns bytes per pool, backend and direction, open
// connections included, never below what was reported before.
func (m *Metrics) byteTotals(open []l4.ConnInfo) map[bytesKey]float64 {
	byBackend, _ := m.traffic(open)
	return byBackend
}

// traffic returns the bytes relayed per pool, backend and direction, and
// per listener both ways, open connections included.
func (m *Metrics) traffic(open []l4.ConnInfo) (byBackend map[bytesKey]float64, byListener map[string]float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byBackend = maps.Clone(m.finished)
	byListener = maps.Clone(m.byListen)
	m.noteLive(open)
	for _, lc := range m.live {
		byBackend[bytesKey{lc.pool, lc.backend, "to_backend"}] += lc.toBackend
		byBackend[bytesKey{lc.pool, lc.backend, "to_client"}] += lc.toClnt
		byListener[lc.listener] += lc.toBackend + lc.toClnt
	}
	return byBackend, byListener
}

// noteLive records the byte counts of open connections. m.mu must be held.
func (m *Metrics) noteLive(open []l4.ConnInfo) {
	for _, ci := range open {
		lc := m.live[ci.ID]
		lc.listener, lc.pool, lc.backend = ci.Listener, ci.Pool, ci.Backend
		lc.toBackend = max(lc.toBackend, float64(ci.ReceivedFromClient))
		lc.toClnt = max(lc.toClnt, float64(ci.ReceivedFromBackend))
		m.live[ci.ID] = lc
	}
}

// BackendBytes returns the bytes relayed for one backend each way.
func (m *Metrics) BackendBytes(open []l4.ConnInfo, pool, backend string) (toBackend, toClient float64) {
	t := m.byteTotals(open)
	return t[bytesKey{pool, backend, "to_backend"}], t[bytesKey{pool, backend, "to_client"}]
}

func (c *liveCollector) collectBackends(ch chan<- prometheus.Metric) {
	m := c.m
	if rt := m.src.runtime(); rt != nil {
		for name, p := range rt.Pools {
			inPanic := 0.0
			if p.InPanic() {
				inPanic = 1
			}
			ch <- prometheus.MustNewConstMetric(descPoolPanic, prometheus.GaugeValue, inPanic, name)
			for _, b := range p.Backends() {
				up := 0.0
				if b.State() == balancer.Healthy {
					up = 1
				}
				ch <- prometheus.MustNewConstMetric(descBackendUp, prometheus.GaugeValue, up, name, b.Address)
				ch <- prometheus.MustNewConstMetric(descBackendActive, prometheus.GaugeValue, float64(b.Active()), name, b.Address)
			}
		}
	}
	if m.src.Certificates != nil {
		expiry := map[string]time.Time{} // a name served by several certificates: the latest
		for _, cert := range m.src.Certificates() {
			for _, n := range cert.Names {
				if cert.NotAfter.After(expiry[n]) {
					expiry[n] = cert.NotAfter
				}
			}
		}
		for n, t := range expiry {
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(t.Unix()), n)
		}
	}
}
