package config

import (
	"strings"
	"testing"
	"time"
)

func TestRedisStorageErrors(t *testing.T) {
	redis := func(body string) string { return minimal + "tls:\n  storage:\n    redis:\n" + body }
	cases := []struct{ name, yaml, want string }{
		{"inline password", redis("      address: 127.0.0.1:6379\n      password: hunter2\n"),
			"tls.storage.redis.password: a secret does not belong in the configuration: write it to a file only l4edge can read and set password_file (line 14)"},
		{"address and sentinel", redis("      address: 127.0.0.1:6379\n      sentinel: {master_name: m, addresses: [127.0.0.1:26379]}\n"),
			"tls.storage.redis: set address or sentinel, not both (line 12)"},
		{"neither", redis("      db: 1\n"), "tls.storage.redis: set address (host:port of Redis) or sentinel {master_name, addresses} (line 12)"},
		{"bad address", redis("      address: redis\n"), `tls.storage.redis.address: "redis" is not host:port (line 13)`},
		{"sentinel without name", redis("      sentinel: {addresses: [127.0.0.1:26379]}\n"), "tls.storage.redis.sentinel.master_name: the name the sentinels monitor is required (line 13)"},
		{"bad sentinel address", redis("      sentinel: {master_name: m, addresses: [x]}\n"), `tls.storage.redis.sentinel.addresses[0]: "x" is not host:port (line 13)`},
		{"negative db", redis("      address: 127.0.0.1:6379\n      db: -1\n"), "tls.storage.redis.db: must not be negative, got -1 (line 14)"},
		{"zero timeout", redis("      address: 127.0.0.1:6379\n      timeout: 0s\n"), "tls.storage.redis.timeout: must be above 0: a Redis operation must be bounded (line 14)"},
		{"empty prefix", redis("      address: 127.0.0.1:6379\n      prefix: \"\"\n"), `tls.storage.redis.prefix: "" must be a non-empty word without spaces (line 14)`},
		{"tls options without tls", redis("      address: 127.0.0.1:6379\n      tls: {ca_file: /ca.pem}\n"), "tls.storage.redis.tls: ca_file and server_name are only used with enabled: true (line 14)"},
		{"unknown key", redis("      address: 127.0.0.1:6379\n      passwd_file: /x\n"), "tls.storage.redis.passwd_file: unknown key (line 14)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			for _, e := range Errors(err) {
				if strings.Contains(e.Error(), tc.want) {
					if strings.Contains(e.Error(), "hunter2") {
						t.Fatalf("the error shows the password: %v", e)
					}
					return
				}
			}
			t.Fatalf("want %q among:\n%v", tc.want, err)
		})
	}
}

func TestRedisStorageDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal + "tls:\n  storage:\n    redis: {sentinel: {master_name: certs, addresses: [10.0.0.5:26379]}, password_file: /etc/p}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.TLS.Storage.Redis
	if r.Prefix != "l4edge" || r.Timeout != 2*time.Second || cfg.TLS.Storage.File != "" || r.Sentinel.MasterName != "certs" {
		t.Fatalf("%+v", r)
	}
}
