//go:build linux

package tlsrelay

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/l4edge/l4edge/l4/relayloop"
)

// StartInLoop relays a terminated connection in the event loops, as a
// flow f with a session (relayloop.StartSession): its records are read,
// opened, sealed and written in the loop's goroutine with non-blocking
// system calls, so a message costs no goroutine, no stack and no wake-up
// of its own, and an idle connection holds no buffer. client.Conn must be
// a *tls.Conn made by Server whose handshake is done and left no byte
// buffered (CanStartInLoop); on an error the connection is as it was, and
// the caller relays it otherwise (Park, Relay).
func (r *Relayer) StartInLoop(loops *relayloop.Relay, f *relayloop.Flow, client Leg, backend *net.TCPConn, idle time.Duration, done relayloop.Done) error {
	return startSession(client, func(tc *tls.Conn, rc *recordConn) error {
		return loops.StartSession(f, client.TCP, tc, rc.bindLoop, backend, idle, done)
	})
}

// StartConnectingInLoop is StartInLoop for a backend whose nonblocking
// connect is in progress (relayloop.StartSessionConnecting): the loop
// completes the connect, trying further backends through c, and then
// relays the session. The flow owns backendFD once this succeeds; on an
// error the caller still owns it and the connection is as it was.
func (r *Relayer) StartConnectingInLoop(loops *relayloop.Relay, f *relayloop.Flow, client Leg, backendFD int, connectTimeout time.Duration, c relayloop.Connector) error {
	return startSession(client, func(tc *tls.Conn, rc *recordConn) error {
		return loops.StartSessionConnecting(f, client.TCP, tc, rc.bindLoop, backendFD, connectTimeout, c)
	})
}

// CanStartInLoop reports why an event loop cannot take client's session,
// or nil when it can: client.Conn must be a *tls.Conn made by Server, and
// no byte read before the handshake may still be buffered.
func CanStartInLoop(client Leg) error {
	_, _, err := loopSession(client)
	return err
}

// startSession hands client's session to an event loop with start, which
// is given the *tls.Conn and the reader under it, whose bindLoop makes the
// loop's transport its own; when start fails the reader is restored.
func startSession(client Leg, start func(*tls.Conn, *recordConn) error) error {
	tc, rc, err := loopSession(client)
	if err != nil {
		return err
	}
	under := rc.Conn
	if err := start(tc, rc); err != nil {
		rc.Conn, rc.inLoop = under, false
		return err
	}
	return nil
}

// Why an event loop cannot take a session (loopSession).
var (
	errNotTerminated = errors.New("tls relay: not a terminated connection")
	errNotServer     = errors.New("tls relay: the TLS connection was not made by tlsrelay.Server")
	errBuffered      = errors.New("tls relay: bytes read before the handshake are still buffered")
)

// loopSession returns client's *tls.Conn and the reader under it, or why
// an event loop cannot take them (CanStartInLoop).
func loopSession(client Leg) (*tls.Conn, *recordConn, error) {
	tc, ok := client.Conn.(*tls.Conn)
	if !ok {
		return nil, nil, errNotTerminated
	}
	rc, ok := tc.NetConn().(*recordConn)
	if !ok {
		return nil, nil, errNotServer
	}
	if b, ok := rc.Conn.(interface{ Buffered() int }); ok && b.Buffered() > 0 {
		return nil, nil, errBuffered
	}
	return tc, rc, nil
}
