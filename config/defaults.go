package config

import (
	"fmt"
	"time"
)

// Defaults of the configuration (docs/configuration.md lists them by key),
// applied in one place.
const (
	DefaultLogLevel         = "info"
	DefaultLogFormat        = "json"
	DefaultShutdownGrace    = 30 * time.Second
	DefaultStorageDir       = "/var/lib/l4edge"
	DefaultACMECA           = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultInspectTimeout   = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultProxyTimeout     = 3 * time.Second
	DefaultIPv6Prefix       = 64
	DefaultConnectTimeout   = 3 * time.Second
	DefaultConnectAttempts  = 3
	DefaultPassiveFall      = 3
	DefaultPassiveCooldown  = 10 * time.Second
	DefaultHealthInterval   = 5 * time.Second
	DefaultHealthTimeout    = 2 * time.Second
	DefaultHealthRise       = 2
	DefaultHealthFall       = 3
	DefaultMinTLSVersion    = "1.2"
)

// applyDefaults fills every key the file left out. Keys the file set, even
// to zero, are kept for validation to judge.
func applyDefaults(c *Config) {
	str := func(v *string, path, def string) {
		if *v == "" && !c.isSet(path) {
			*v = def
		}
	}
	dur := func(v *time.Duration, path string, def time.Duration) {
		if !c.isSet(path) {
			*v = def
		}
	}
	num := func(v *int, path string, def int) {
		if !c.isSet(path) {
			*v = def
		}
	}
	str(&c.Log.Level, "log.level", DefaultLogLevel)
	str(&c.Log.Format, "log.format", DefaultLogFormat)
	dur(&c.ShutdownGrace, "shutdown_grace", DefaultShutdownGrace)
	if c.TLS.Storage.File == "" && c.TLS.Storage.Redis == nil {
		c.TLS.Storage.File = DefaultStorageDir
	}
	if r := c.TLS.Storage.Redis; r != nil {
		str(&r.Prefix, "tls.storage.redis.prefix", DefaultRedisPrefix)
		dur(&r.Timeout, "tls.storage.redis.timeout", DefaultRedisTimeout)
	}
	if a := c.TLS.ACME; a != nil {
		str(&a.CA, "tls.acme.ca", DefaultACMECA)
		if !c.isSet("tls.acme.challenges") {
			a.Challenges = []string{"tls-alpn-01", "http-01"}
		}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := fmt.Sprintf("listeners[%d]", i)
		str(&l.Name, p+".name", fmt.Sprintf("listener%d", i))
		dur(&l.InspectTimeout, p+".inspect_timeout", DefaultInspectTimeout)
		dur(&l.HandshakeTimeout, p+".handshake_timeout", DefaultHandshakeTimeout)
		num(&l.IPv6PrefixLength, p+".ipv6_prefix_length", DefaultIPv6Prefix)
		if l.ProxyProtocolIn != nil {
			dur(&l.ProxyProtocolIn.Timeout, p+".proxy_protocol_in.timeout", DefaultProxyTimeout)
		}
		for j := range l.Routes {
			r := &l.Routes[j]
			rp := fmt.Sprintf("%s.routes[%d]", p, j)
			str(&r.Name, rp+".name", fmt.Sprintf("route%d", j))
			if t := r.TLS; t != nil {
				str(&t.Mode, rp+".tls.mode", ModePassthrough)
				if t.Mode == ModeTerminate {
					str(&t.Cert, rp+".tls.cert", CertACME)
					str(&t.MinVersion, rp+".tls.min_version", DefaultMinTLSVersion)
					if !c.isSet(rp + ".tls.alpn") {
						t.ALPN = []string{"http/1.1"}
					}
				}
			}
		}
	}
	for name, pool := range c.Pools {
		if pool == nil {
			pool = &Pool{}
			c.Pools[name] = pool
		}
		p := "pools." + name
		pool.Name = name
		str(&pool.Policy, p+".policy", PolicyRoundRobin)
		dur(&pool.ConnectTimeout, p+".connect_timeout", DefaultConnectTimeout)
		num(&pool.ConnectAttempts, p+".connect_attempts", DefaultConnectAttempts)
		num(&pool.PassiveFall, p+".passive_fall", DefaultPassiveFall)
		dur(&pool.PassiveCooldown, p+".passive_cooldown", DefaultPassiveCooldown)
		for i := range pool.Backends {
			num(&pool.Backends[i].Weight, fmt.Sprintf("%s.backends[%d].weight", p, i), 1)
		}
		if h := pool.Health; h != nil {
			str(&h.Path, p+".health.path", "/")
			dur(&h.Interval, p+".health.interval", DefaultHealthInterval)
			dur(&h.Timeout, p+".health.timeout", DefaultHealthTimeout)
			num(&h.Rise, p+".health.rise", DefaultHealthRise)
			num(&h.Fall, p+".health.fall", DefaultHealthFall)
			if !c.isSet(p + ".health.expect_status") {
				h.ExpectStatus = []string{"200-399"}
			}
		}
	}
}
