package l4

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// connect is the connect stage where a goroutine may wait: Pool.Dial walks
// the route's pool (balancer.Attempts: retries up to connect_attempts,
// passive failures), each attempt bounded by connect_timeout and aborted
// by s.ctx at shutdown. With IP-literal backends the raw path, and the
// full path for terminated TLS, connect in an event loop instead
// (connect_loop.go).
func (s *Server) connect(c *conn) (*net.TCPConn, ending) {
	backend, b, err := c.route.pool.Dial(s.ctx, c.client.Addr())
	if err != nil {
		return nil, dialFailure(err)
	}
	c.backendConn.Store(backend)
	c.backendRef.Store(b)
	c.set(connRouted)
	if e := c.forcedEnding(); e.ends() { // shutdown raced with the dial
		return nil, e
	}
	return backend, ending{}
}

// dialFailure is how a connection whose connect stage failed ends.
func dialFailure(err error) ending {
	if errors.Is(err, balancer.ErrNoBackend) {
		return ending{closereason.NoBackend, err}
	}
	return ending{closereason.DialFailed, err}
}

// sendPreamble is the connect stage's last step: it writes what must reach
// the backend before the relay, hdr (the PROXY header) then raw (the
// ClientHello bytes the route stage read and passes through), within
// connect_timeout. A failure counts against the backend.
func sendPreamble(c *conn, backend *net.TCPConn, hdr, raw []byte) ending {
	if len(hdr)+len(raw) == 0 {
		return ending{}
	}
	b := c.backendRef.Load()
	_ = backend.SetWriteDeadline(time.Now().Add(c.route.pool.Config.ConnectTimeout))
	if _, err := backend.Write(append(hdr, raw...)); err != nil {
		err = fmt.Errorf("write to backend %s: %w", b.Address, err)
		b.ReportFailure(err)
		return ending{closereason.BackendClosed, err}
	}
	_ = backend.SetWriteDeadline(time.Time{})
	c.preamble = int32(len(raw))
	return ending{}
}
