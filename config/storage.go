package config

import (
	"fmt"
	"strings"
	"time"
)

// Defaults of tls.storage.redis.
const (
	DefaultRedisPrefix  = "l4edge"
	DefaultRedisTimeout = 2 * time.Second
)

// RedisStorage configures certificate, lock and cluster storage in Redis,
// shared by every instance of a cluster.
type RedisStorage struct {
	// Address is host:port of one Redis server; exclusive with Sentinel.
	Address string `yaml:"address"`
	// Sentinel selects the primary of a Sentinel group; nil when not set.
	Sentinel *RedisSentinel `yaml:"sentinel"`
	// Username is the optional ACL user.
	Username string `yaml:"username"`
	// PasswordFile holds the password (its first line); empty for none.
	PasswordFile string `yaml:"password_file"`
	// Password is refused: a secret belongs in PasswordFile.
	Password string `yaml:"password"`
	// DB is the Redis database number.
	DB int `yaml:"db"`
	// Prefix is prepended to every key, so clusters can share a Redis.
	Prefix string `yaml:"prefix"`
	// TLS configures rediss:// connections.
	TLS RedisTLS `yaml:"tls"`
	// Timeout bounds one Redis operation.
	Timeout time.Duration `yaml:"timeout"`
}

// RedisSentinel names a Sentinel-managed primary.
type RedisSentinel struct {
	// MasterName is the name the sentinels monitor.
	MasterName string `yaml:"master_name"`
	// Addresses are the sentinels' host:port.
	Addresses []string `yaml:"addresses"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// Enabled speaks TLS to Redis and the sentinels.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle trusted for the server certificate (default: system roots).
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
}

// redis checks the shape of tls.storage.redis; whether Redis answers is
// checked at run.
func (k *checker) redis(r *RedisStorage) {
	const p = "tls.storage.redis"
	switch {
	case r.Address != "" && r.Sentinel != nil:
		k.fail(p, "set address or sentinel, not both")
	case r.Address == "" && r.Sentinel == nil:
		k.fail(p, "set address (host:port of Redis) or sentinel {master_name, addresses}")
	case r.Address != "":
		k.hostPort(p+".address", r.Address, 1)
	default:
		if r.Sentinel.MasterName == "" {
			k.fail(p+".sentinel.master_name", "the name the sentinels monitor is required")
		}
		if len(r.Sentinel.Addresses) == 0 {
			k.fail(p+".sentinel.addresses", "list at least one sentinel host:port")
		}
		for i, a := range r.Sentinel.Addresses {
			k.hostPort(fmt.Sprintf("%s.sentinel.addresses[%d]", p, i), a, 1)
		}
	}
	if r.Password != "" {
		k.fail(p+".password", "a secret does not belong in the configuration: write it to a file only l4edge can read and set password_file")
	}
	k.nonNegative(p+".db", r.DB)
	if r.Prefix == "" || strings.ContainsAny(r.Prefix, " \t\r\n") {
		k.fail(p+".prefix", "%q must be a non-empty word without spaces", r.Prefix)
	}
	if r.Timeout <= 0 {
		k.fail(p+".timeout", "must be above 0: a Redis operation must be bounded")
	}
	if !r.TLS.Enabled && (r.TLS.CAFile != "" || r.TLS.ServerName != "") {
		k.fail(p+".tls", "ca_file and server_name are only used with enabled: true")
	}
}
