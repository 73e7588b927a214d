package admin

import "github.com/l4edge/l4edge/tlsterm"

// StatusDoc is the document of GET /status; the status page and the
// l4edge client commands read it.
type StatusDoc struct {
	Listeners    []ListenerStatus   `json:"listeners"`
	Pools        []PoolStatus       `json:"pools"`
	Certificates []tlsterm.CertInfo `json:"certificates"`
	// Storage and Cluster: see cluster.go; Cluster only with Redis storage.
	Storage *StorageStatus `json:"storage,omitempty"`
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// ListenerStatus is one listener in /status.
type ListenerStatus struct {
	Name     string        `json:"name"`
	Address  string        `json:"address"`
	Accepted uint64        `json:"accepted"`
	Active   int64         `json:"active"`
	Refused  uint64        `json:"refused"`
	Routes   []RouteStatus `json:"routes"`
}

// RouteStatus is one route of a listener in /status.
type RouteStatus struct {
	Name   string   `json:"name"`
	Pool   string   `json:"pool"`
	TLS    string   `json:"tls"`
	SNI    []string `json:"sni"`
	ALPN   []string `json:"alpn"`
	Active int      `json:"active"`
}

// PoolStatus is one pool in /status.
type PoolStatus struct {
	Name   string `json:"name"`
	Policy string `json:"policy"`
	// Panic is true while no backend is healthy and the passively failed
	// are tried anyway.
	Panic    bool            `json:"panic"`
	Backends []BackendStatus `json:"backends"`
}
