//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Bounds of every load loop: no operation waits longer than opTimeout and
// no worker runs more than maxOps operations, whatever the duration.
const (
	opTimeout = 5 * time.Second
	maxOps    = 50_000_000
	msgSize   = 64
)

// dialer opens one client connection (TLS handshake included).
type dialer func(ctx context.Context) (net.Conn, error)

// plainDialer dials addr over TCP.
func plainDialer(addr string) dialer {
	d := &net.Dialer{Timeout: opTimeout}
	return func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}
}

// tlsDialer dials addr and completes a TLS handshake with cfg.
func tlsDialer(addr string, cfg *tls.Config) dialer {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: opTimeout}, Config: cfg}
	return func(ctx context.Context) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		return d.DialContext(ctx, "tcp", addr)
	}
}

// echoer sends a 64-byte message and checks that it comes back.
type echoer struct {
	msg, buf []byte
}

// newEchoer returns an echoer with its own buffers.
func newEchoer() *echoer {
	e := &echoer{msg: make([]byte, msgSize), buf: make([]byte, msgSize)}
	for i := range e.msg {
		e.msg[i] = byte('a' + i%26)
	}
	return e
}

// roundTrip writes the message to c and reads it back within opTimeout.
func (e *echoer) roundTrip(c net.Conn) error {
	if err := c.SetDeadline(time.Now().Add(opTimeout)); err != nil {
		return err
	}
	if _, err := c.Write(e.msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, e.buf); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if !bytes.Equal(e.buf, e.msg) {
		return fmt.Errorf("echo differs: got %q", e.buf)
	}
	return nil
}

// tally collects the outcome of one worker; merge them afterwards.
type tally struct {
	ok, failed uint64
	lat        hist
	firstErr   error
}

// fail counts a failed operation and keeps the first error.
func (t *tally) fail(err error) {
	t.failed++
	if t.firstErr == nil {
		t.firstErr = err
	}
}

// merge adds o into t.
func (t *tally) merge(o *tally) {
	t.ok += o.ok
	t.failed += o.failed
	t.lat.merge(&o.lat)
	if t.firstErr == nil {
		t.firstErr = o.firstErr
	}
}

// runWorkers runs fn in n goroutines, each with its own tally, and returns
// the merged tally and the wall time they took.
func runWorkers(n int, fn func(w int, t *tally)) (*tally, time.Duration) {
	tallies := make([]tally, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		wg.Go(func() { fn(w, &tallies[w]) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := &tally{}
	for i := range tallies {
		total.merge(&tallies[i])
	}
	return total, elapsed
}

// pause sleeps d unless ctx ends first (used after a failure so a dead
// proxy does not spin the loop).
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// tlsSummary describes a TLS connection's negotiated parameters.
func tlsSummary(c net.Conn) string {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	return fmt.Sprintf("%s %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID)
}
