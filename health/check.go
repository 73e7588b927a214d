// Package health runs active checks of pool backends (tcp, tls, http,
// websocket) and reports each result to the backend's state machine in
// package balancer, which applies rise and fall.
package health

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/proxyproto"
)

// wsGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Check runs one check of one backend of a pool now, bounded by the pool's
// health timeout, and returns why it failed (nil when it passed).
func Check(ctx context.Context, pool config.Pool, address string) error {
	h := pool.Health
	if h == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	err := check(ctx, pool, address)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("timeout after %s", h.Timeout)
		}
		return fmt.Errorf("health check %s %s: %w", h.Check, address, err)
	}
	return nil
}

func check(ctx context.Context, pool config.Pool, address string) error {
	h := pool.Health
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return fmt.Errorf("dial: %w", unwrapOp(err))
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := sendProxyLocal(conn, pool.ProxyProtocol); err != nil {
		return err
	}
	switch h.Check {
	case config.CheckTCP:
		return nil
	case config.CheckTLS:
		cfg, err := tlsConfig(h, address)
		if err != nil {
			return err
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		_ = tc.Close()
		return nil
	case config.CheckHTTP:
		return checkHTTP(conn, h, address)
	case config.CheckWebSocket:
		return checkWebSocket(conn, h, address)
	}
	return fmt.Errorf("unknown check %q", h.Check)
}

// sendProxyLocal sends a PROXY LOCAL header (v2) or UNKNOWN (v1) first,
// so backends that require PROXY protocol accept the check's connection.
func sendProxyLocal(c net.Conn, version string) error {
	var h *proxyproto.Header
	switch version {
	case "v1":
		h = &proxyproto.Header{Version: 1, Command: proxyproto.Local}
	case "v2":
		h = &proxyproto.Header{Version: 2, Command: proxyproto.Local}
	default:
		return nil
	}
	if _, err := c.Write(h.Append(nil)); err != nil {
		return fmt.Errorf("write PROXY header: %w", err)
	}
	return nil
}

func tlsConfig(h *config.Health, address string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: h.SNI, InsecureSkipVerify: true}
	if cfg.ServerName == "" {
		cfg.ServerName = h.Host
	}
	if h.CAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", h.CAFile)
	}
	cfg.InsecureSkipVerify = false
	cfg.RootCAs = pool
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(address)
	}
	return cfg, nil
}

func hostHeader(h *config.Health, address string) string {
	if h.Host != "" {
		return h.Host
	}
	return address
}

func checkHTTP(conn net.Conn, h *config.Health, address string) error {
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: l4edge-health\r\nConnection: close\r\n\r\n", h.Path, hostHeader(h, address))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	if !statusOK(resp.StatusCode, h.ExpectStatus) {
		return fmt.Errorf("got status %d, want %s", resp.StatusCode, strings.Join(h.ExpectStatus, ","))
	}
	if h.ExpectBody != "" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if !strings.Contains(string(body), h.ExpectBody) {
			return fmt.Errorf("body lacks %q", h.ExpectBody)
		}
	}
	return nil
}

func statusOK(code int, ranges []string) bool {
	for _, r := range ranges {
		if lo, hi, err := config.ParseStatusRange(r); err == nil && code >= lo && code <= hi {
			return true
		}
	}
	return false
}

// checkWebSocket performs a real RFC 6455 opening handshake and a clean close.
func checkWebSocket(conn net.Conn, h *config.Health, address string) error {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: l4edge-health\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		h.Path, hostHeader(h, address), key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return fmt.Errorf("got %d, want 101", resp.StatusCode)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("101 without Upgrade: websocket")
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fmt.Errorf("101 without Connection: Upgrade")
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	// A masked close frame with status 1000, then the server's close frame.
	mask := [4]byte{}
	_, _ = rand.Read(mask[:])
	payload := []byte{0x03, 0xe8}
	frame := []byte{0x88, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		return fmt.Errorf("write close frame: %w", err)
	}
	// Wait for the server's close frame so it can close first; the
	// handshake passed, so one that drops without it passes too.
	_, _ = io.ReadFull(br, make([]byte, 2))
	return nil
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func unwrapOp(err error) error {
	if op, ok := err.(*net.OpError); ok && op.Err != nil {
		return op.Err
	}
	return err
}

// jitter spreads checks: up to a tenth of the interval.
func jitter(interval time.Duration) time.Duration {
	var b [8]byte
	_, _ = rand.Read(b[:])
	n := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
	return time.Duration(n % uint64(interval/10+1))
}
