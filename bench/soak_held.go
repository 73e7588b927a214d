//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// heldOpTimeout bounds each handshake, message and close of a held WebSocket.
const heldOpTimeout = 10 * time.Second

// heldConn is one held WebSocket and whether it is still alive.
type heldConn struct {
	set  string
	i    int
	c    *websocket.Conn
	mu   sync.Mutex
	dead bool
}

// heldSet is every held WebSocket of the soak.
type heldSet struct {
	conns []*heldConn
}

// startHeld dials the held WebSockets (terminated, then passthrough), ten
// at a time, and starts one goroutine per connection that sends a message
// every heldPing, spread evenly, until ctx ends. Any failure is a cut: no
// fault the soak injects touches these connections' backends.
func (sc *soakScene) startHeld(ctx context.Context, l *soakLedger, wg *sync.WaitGroup) *heldSet {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: sc.clientTLS.Clone()}}
	hs := &heldSet{}
	sets := []struct {
		name, url string
		n         int
	}{
		{"held-term", "wss://" + sc.conf.Term + "/held", sc.p.heldTerm},
		{"held-pass", "wss://" + sc.conf.Pass + "/held", sc.p.heldPass},
	}
	sem := make(chan struct{}, 10)
	var dials sync.WaitGroup
	var mu sync.Mutex
	for _, s := range sets {
		for i := range s.n {
			dials.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				dctx, cancel := context.WithTimeout(ctx, heldOpTimeout)
				c, _, err := websocket.Dial(dctx, fmt.Sprintf("%s/%d", s.url, i), &websocket.DialOptions{HTTPClient: hc})
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						l.unexplained(s.name+" dial", err)
					}
					return
				}
				l.add(s.name+" opened", 1)
				mu.Lock()
				hs.conns = append(hs.conns, &heldConn{set: s.name, i: i, c: c})
				mu.Unlock()
			})
		}
	}
	dials.Wait()
	for k, h := range hs.conns {
		offset := sc.p.heldPing * time.Duration(k) / time.Duration(len(hs.conns))
		wg.Go(func() { h.run(ctx, l, offset, sc.p.heldPing) })
	}
	return hs
}

// run sends a numbered message every ping (first after offset) and checks
// its echo, until ctx ends or the connection fails.
func (h *heldConn) run(ctx context.Context, l *soakLedger, offset, ping time.Duration) {
	timer := time.NewTimer(offset)
	defer timer.Stop()
	opened := time.Now()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(ping)
		msg := fmt.Appendf(nil, "%s #%d message %d", h.set, h.i, seq)
		if err := h.echo(msg); err != nil {
			h.mu.Lock()
			h.dead = true
			h.mu.Unlock()
			l.unexplained(h.set+" cut", fmt.Errorf("#%d after %v and %d messages: %w", h.i, time.Since(opened).Round(time.Second), seq, err))
			l.add(h.set+" cut", 1)
			return
		}
		l.add(h.set+" messages", 1)
	}
}

// echo writes msg and reads it back within heldOpTimeout. The operation's
// context is not the soak's, so the end of the soak never cuts a message.
func (h *heldConn) echo(msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), heldOpTimeout)
	defer cancel()
	if err := h.c.Write(ctx, websocket.MessageText, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	_, got, err := h.c.Read(ctx)
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo differs: sent %q, got %q", msg, got)
	}
	return nil
}

// closeAll sends one last message on every live held connection and
// closes it with a normal closure (a failure of either is a cut).
func (hs *heldSet) closeAll(l *soakLedger) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for _, h := range hs.conns {
		h.mu.Lock()
		dead := h.dead
		h.mu.Unlock()
		if dead {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			err := h.echo([]byte("last message"))
			if err == nil {
				err = h.c.Close(websocket.StatusNormalClosure, "soak over")
			}
			if err != nil {
				l.unexplained(h.set+" cut", fmt.Errorf("#%d at the end: %w", h.i, err))
				l.add(h.set+" cut", 1)
				_ = h.c.CloseNow()
				return
			}
			l.add(h.set+" closed cleanly", 1)
		})
	}
	wg.Wait()
}
