//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// startChurn starts the churn workers: plain TCP to the churn listener
// (pool churn, whose second backend the fault loop kills) and terminated
// TLS to the term listener (pool held-term, never killed). Each opens a
// connection, echoes 64 bytes, closes, and waits churnGap.
func (sc *soakScene) startChurn(ctx context.Context, l *soakLedger, wg *sync.WaitGroup) {
	for range sc.p.churnPlain {
		wg.Go(func() { sc.churn(ctx, l, "churn-plain", plainDialer(sc.conf.Churn), true) })
	}
	for range sc.p.churnTLS {
		wg.Go(func() { sc.churn(ctx, l, "churn-tls", tlsDialer(sc.conf.Term, sc.clientTLS), false) })
	}
}

// churn runs one worker until ctx ends. A failure is explained only when
// the connection could have reached the killed backend (killable) and a
// SIGKILL was sent while it was open.
func (sc *soakScene) churn(ctx context.Context, l *soakLedger, name string, dial dialer, killable bool) {
	e := newEchoer()
	for range maxOps {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		err := churnOnce(ctx, dial, e)
		switch {
		case err == nil:
			l.add(name+" ok", 1)
		case ctx.Err() != nil:
			return
		case killable && l.killedDuring(start, time.Now()):
			l.add(name+" failed", 1)
			l.explain(name + ": open while a churn backend was SIGKILLed")
		default:
			l.add(name+" failed", 1)
			l.unexplained(name, err)
		}
		pause(ctx, sc.p.churnGap)
	}
}

// churnOnce opens one connection, echoes a message and closes it.
func churnOnce(ctx context.Context, dial dialer, e *echoer) error {
	c, err := dial(ctx)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	return e.roundTrip(c)
}

// startSlowloris starts the slowloris workers: each connects to the term
// listener, sends a real ClientHello one byte per second, and measures when
// l4edge closes it. Closing within a second before to two seconds after
// inspect_timeout is what l4edge must do; anything else is unexplained.
func (sc *soakScene) startSlowloris(ctx context.Context, l *soakLedger, wg *sync.WaitGroup) {
	hello, err := captureHello(sc.clientTLS)
	if err != nil {
		l.unexplained("slowloris", err)
		return
	}
	for i := range sc.p.slowloris {
		wg.Go(func() {
			// Spread the workers over one inspect_timeout.
			pause(ctx, sc.p.inspect*time.Duration(i)/time.Duration(sc.p.slowloris))
			for range maxOps {
				if ctx.Err() != nil {
					return
				}
				sc.slowloris(ctx, l, hello)
			}
		})
	}
}

// slowloris holds one trickling connection until l4edge closes it.
func (sc *soakScene) slowloris(ctx context.Context, l *soakLedger, hello []byte) {
	c, err := net.DialTimeout("tcp", sc.conf.Term, opTimeout)
	if err != nil {
		if ctx.Err() == nil {
			l.unexplained("slowloris dial", err)
			pause(ctx, time.Second)
		}
		return
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		// l4edge never answers a hello it has not read in full: any read
		// result is the close.
		_, _ = io.Copy(io.Discard, c)
		closed <- time.Since(start)
	}()
	limit := sc.p.inspect + 10*time.Second
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case held := <-closed:
			l.add("slowloris closed", 1)
			l.duration("slowloris", held)
			if held < sc.p.inspect-time.Second || held > sc.p.inspect+2*time.Second {
				l.unexplained("slowloris", fmt.Errorf("closed after %v, inspect_timeout is %v", held.Round(time.Millisecond), sc.p.inspect))
			}
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(start) > limit || i >= len(hello) {
			l.unexplained("slowloris", fmt.Errorf("still open after %v and %d bytes, inspect_timeout is %v", time.Since(start).Round(time.Millisecond), i, sc.p.inspect))
			return
		}
		_, _ = c.Write(hello[i : i+1]) // a failed write shows as the close
	}
}

// captureHello returns the first TLS record a crypto/tls client with cfg
// sends: a real ClientHello (with post-quantum key shares, 1.5 KB or more).
func captureHello(cfg *tls.Config) ([]byte, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, cfg.Clone()).Handshake() }()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		return nil, fmt.Errorf("capture a ClientHello: %w", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		return nil, fmt.Errorf("capture a ClientHello: %w", err)
	}
	if hdr[0] != 0x16 {
		return nil, errors.New("capture a ClientHello: first record is not a handshake")
	}
	return append(hdr, body...), nil
}
