//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/tlsterm/redisstore"
)

// storageCheckWithin is how long run waits for Redis to answer at start.
const storageCheckWithin = 10 * time.Second

// openStorage connects to tls.storage.redis and checks that Redis answers
// (PING, after AUTH when a password is set) within storageCheckWithin.
func openStorage(ctx context.Context, r *config.RedisStorage, log *zap.Logger, observe func(op, result string), onState func(bool, error)) (*redisstore.Storage, error) {
	opts := redisstore.Options{
		Address: r.Address, Username: r.Username, DB: r.DB, Prefix: r.Prefix, Timeout: r.Timeout,
		Log: log.Named("storage"), Observe: observe, OnState: onState,
	}
	if r.Sentinel != nil {
		opts.MasterName, opts.SentinelAddrs = r.Sentinel.MasterName, r.Sentinel.Addresses
	}
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("tls.storage.redis.password_file: %w", err)
		}
		opts.Password, _, _ = strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
	}
	if r.TLS.Enabled {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLS.ServerName}
		if r.TLS.CAFile != "" {
			pem, err := os.ReadFile(r.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("tls.storage.redis.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.storage.redis.tls.ca_file: %s holds no PEM certificate", r.TLS.CAFile)
			}
		}
		opts.TLS = tc
	}
	s := redisstore.New(opts)
	if err := s.Check(ctx, storageCheckWithin); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("tls.storage.redis: %w", err)
	}
	log.Info("storage connected", zap.String("storage", "redis"), zap.String("address", s.Where()), zap.String("prefix", r.Prefix))
	return s, nil
}
