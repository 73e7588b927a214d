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
// buffered; on an error the connection is as it was, and the caller
// relays it otherwise (Park, Relay).
func (r *Relayer) StartInLoop(loops *relayloop.Relay, f *relayloop.Flow, client Leg, backend *net.TCPConn, idle time.Duration, done relayloop.Done) error {
	tc, ok := client.Conn.(*tls.Conn)
	if !ok {
		return errors.New("tls relay: not a terminated connection")
	}
	rc, ok := tc.NetConn().(*recordConn)
	if !ok {
		return errors.New("tls relay: the TLS connection was not made by tlsrelay.Server")
	}
	if b, ok := rc.Conn.(interface{ Buffered() int }); ok && b.Buffered() > 0 {
		return errors.New("tls relay: bytes read before the handshake are still buffered")
	}
	under := rc.Conn
	bind := func(c net.Conn) { rc.Conn, rc.inLoop = c, true }
	if err := loops.StartSession(f, client.TCP, tc, bind, backend, idle, done); err != nil {
		rc.Conn, rc.inLoop = under, false
		return err
	}
	return nil
}
