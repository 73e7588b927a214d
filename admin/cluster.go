package admin

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StorageStatus is the storage section of /status.
type StorageStatus struct {
	Kind      string `json:"kind"` // file or redis
	Address   string `json:"address"`
	Up        bool   `json:"up"`
	LastError string `json:"last_error"`
}

// ClusterStatus is the cluster section of /status: the members whose
// heartbeats are in shared storage, those whose configuration hash differs
// from this instance's, and the cluster-wide drains.
type ClusterStatus struct {
	Self    string         `json:"self"`
	Members []MemberStatus `json:"members"`
	Drift   []string       `json:"drift"`
	Drains  []DrainStatus  `json:"drains"`
}

// MemberStatus is one member's last heartbeat.
type MemberStatus struct {
	ID           string    `json:"id"`
	Version      string    `json:"version"`
	ConfigHash   string    `json:"config_hash"`
	Certificates int       `json:"certificates"`
	LastSeen     time.Time `json:"last_seen"`
}

// DrainStatus is one cluster-wide drain.
type DrainStatus struct {
	Pool    string `json:"pool"`
	Backend string `json:"backend"`
}

// clusterMetrics are the storage and cluster metrics.
type clusterMetrics struct {
	storageUp  prometheus.Gauge
	storageOps *prometheus.CounterVec
}

// registerCluster adds l4edge_storage_up, l4edge_storage_operations_total
// and l4edge_cluster_members (read from src.Cluster at scrape time).
func (m *Metrics) registerCluster() {
	m.cluster.storageUp = prometheus.NewGauge(prometheus.GaugeOpts{Name: "l4edge_storage_up",
		Help: "1 when the certificate storage answers."})
	m.cluster.storageUp.Set(1)
	m.cluster.storageOps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l4edge_storage_operations_total",
		Help: "Shared storage operations by operation and result (ok, not_found, error)."}, []string{"op", "result"})
	members := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "l4edge_cluster_members",
		Help: "Members with a live heartbeat in shared storage (1 without shared storage)."}, func() float64 {
		if m.src.Cluster == nil {
			return 1
		}
		if cs := m.src.Cluster(); cs != nil {
			return float64(len(cs.Members))
		}
		return 1
	})
	m.reg.MustRegister(m.cluster.storageUp, m.cluster.storageOps, members)
}

// StorageOp counts one shared-storage operation.
func (m *Metrics) StorageOp(op, result string) {
	m.cluster.storageOps.WithLabelValues(op, result).Inc()
}

// StorageUp records whether the storage answers.
func (m *Metrics) StorageUp(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.cluster.storageUp.Set(v)
}

// Drain scopes of POST /pools/{pool}/backends/{address}/drain and enable.
const (
	ScopeLocal   = "local"
	ScopeCluster = "cluster"
)

// ErrNoCluster is Sources.Drain's answer to scope cluster without shared storage.
var ErrNoCluster = errors.New("scope cluster needs shared storage: set tls.storage.redis")

// drainScope reads ?scope=, answering 400 itself for anything but local,
// cluster or nothing.
func drainScope(w http.ResponseWriter, r *http.Request) (string, bool) {
	switch scope := r.URL.Query().Get("scope"); scope {
	case "", ScopeLocal:
		return ScopeLocal, true
	case ScopeCluster:
		return ScopeCluster, true
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("scope %q is not local or cluster", scope)})
		return "", false
	}
}
