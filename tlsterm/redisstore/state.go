package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// state is whether Redis answered the last time it was asked.
type state struct {
	up      bool
	lastErr string
}

// Health reports whether Redis is reachable and the last error seen.
func (s *Storage) Health() (up bool, lastError string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.up, s.state.lastErr
}

// observe records an operation: a reply from Redis (even an error reply or
// a missing key) shows it up, a network failure shows it down. A state
// change is logged once.
// cause is go-redis's error, err the one reported.
func (s *Storage) observe(op, result string, cause, err error) {
	if s.opts.Observe != nil {
		s.opts.Observe(op, result)
	}
	if errors.Is(cause, context.Canceled) {
		return
	}
	s.setUp(!unreachable(cause), err)
}

func (s *Storage) setUp(up bool, err error) {
	s.mu.Lock()
	was := s.state.up
	s.state.up = up
	if !up {
		s.state.lastErr = err.Error()
	}
	s.mu.Unlock()
	if was == up {
		return
	}
	if up {
		s.log.Info("storage recovered", zap.String("storage", "redis"), zap.String("address", s.Where()))
	} else {
		s.log.Error("storage unavailable: serving certificates from memory; retrying",
			zap.String("storage", "redis"), zap.String("address", s.Where()), zap.Error(err))
	}
	if s.opts.OnState != nil {
		s.opts.OnState(up, err)
	}
}

// unreachable reports whether err means Redis could not be asked (as
// opposed to Redis answering with an error or nil).
func unreachable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) && !strings.HasPrefix(re.Error(), "LOADING") && !strings.HasPrefix(re.Error(), "READONLY") {
		return false // Redis answered
	}
	return true
}

// monitor pings Redis every second while it is down and every few seconds
// while it is up, so a state change is seen even without certificate work.
func (s *Storage) monitor() {
	defer s.wg.Done()
	for {
		up, _ := s.Health()
		every := 3 * time.Second
		if !up {
			every = time.Second
		}
		select {
		case <-s.stop:
			return
		case <-time.After(every):
		}
		ctx, cancel := s.ctx(context.Background())
		err := s.client.Ping(ctx).Err()
		cancel()
		s.setUp(!unreachable(err), err)
	}
}

// Check asks Redis for PING (after AUTH when a password is set) until it
// answers or within has passed. Authentication failures are not retried.
// The error names Redis, the address and the cause; never the password.
func (s *Storage) Check(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		octx, cancel := s.ctx(ctx)
		err := s.client.Ping(octx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if authFailure(err) || untrusted(err) || time.Now().Add(500*time.Millisecond).After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis %s: %s", s.Where(), explain(err, s.opts.TLS != nil))
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// untrusted reports a server certificate that does not verify: retrying
// cannot help.
func untrusted(err error) bool {
	var ve *tls.CertificateVerificationError
	return errors.As(err, &ve)
}

func authFailure(err error) bool {
	m := err.Error()
	return strings.Contains(m, "WRONGPASS") || strings.Contains(m, "NOAUTH") || strings.Contains(m, "NOPERM") ||
		strings.Contains(m, "invalid password")
}

// explain turns a start-up failure into what the operator should know.
func explain(err error, tlsOn bool) string {
	m := err.Error()
	var ne net.Error
	switch {
	case authFailure(err):
		return fmt.Sprintf("authentication refused (%s): check tls.storage.redis.username and the password in password_file", m)
	case untrusted(err):
		return fmt.Sprintf("server certificate not trusted (%s): set tls.storage.redis.tls.ca_file, and server_name if the certificate names another host", m)
	case strings.Contains(m, "first record does not look like a TLS handshake"),
		tlsOn && (strings.Contains(m, "EOF") || strings.Contains(m, "connection reset") || (errors.As(err, &ne) && ne.Timeout())):
		return fmt.Sprintf("TLS handshake failed (%s): the server does not seem to speak TLS; set tls.storage.redis.tls.enabled: false or enable TLS on Redis", m)
	case strings.Contains(m, "connection refused"):
		return fmt.Sprintf("connection refused (%s): is Redis running and listening on that address?", m)
	case errors.As(err, &ne) && ne.Timeout(), strings.Contains(m, "i/o timeout"):
		return fmt.Sprintf("timeout (%s): Redis did not answer; check the address, firewalls and tls.storage.redis.timeout", m)
	}
	return m
}
