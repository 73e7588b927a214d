//go:build linux

// Package tlsrelay relays connections whose bytes must pass through Go code:
// those on which l4edge terminates TLS (a *tls.Conn on the client side), and
// plain pairs when the event loops cannot take them. StartInLoop hands a
// terminated connection to an event loop, which opens and seals its records
// in its own goroutine (the usual case); Park waits for readability in the
// event loops (relayloop.Watch) and drains in a goroutine, so an idle
// terminated connection holds no goroutine either; Relay copies each
// direction in a goroutine of its own. All report a relayloop.Result, the
// typed result of every relay in l4edge.
//
// A *tls.Conn may be waited for between reads only when it reads through
// the record-bounded reader Server puts under it: see Server.
package tlsrelay

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/relayloop"
)

// Leg is one side of a relayed connection: Conn is what bytes are read from
// and written to (the TCP socket itself, or a *tls.Conn over it), TCP is
// the socket underneath.
type Leg struct {
	Conn net.Conn
	TCP  *net.TCPConn
}

// Relayer moves bytes between a client and a backend. It holds the copy
// buffers for legs that cannot splice (terminated TLS); one serves every
// connection of a server.
type Relayer struct {
	bufs    sync.Pool // copyBufferSize: one TLS record
	bigBufs sync.Pool // bigBufferSize: plain reads towards a *tls.Conn
	// sealedBufs batch the records of one bigBufferSize chunk (see
	// recordConn.startBatch); sealedBufferSize leaves room for the record
	// overhead.
	sealedBufs sync.Pool
}

// sealedBufferSize holds bigBufferSize of plaintext as TLS records: at
// least four records of up to 2^14 bytes, each with a 5-byte header, a
// content type byte and a 16-byte tag, and room for smaller records.
const sealedBufferSize = bigBufferSize + 8<<10

// bigBufferSize is what one read from a plain socket may take when a parked
// relay drains it: four full TLS records.
const bigBufferSize = 64 << 10

// copyBufferSize is one TLS record's worth of plaintext (2^14 bytes, the
// most a record may carry in TLS 1.2 and 1.3), so one tls.Conn.Read drains
// a whole record.
const copyBufferSize = 16 << 10

// New returns a Relayer with empty buffer pools.
func New() *Relayer {
	r := &Relayer{}
	r.bufs.New = func() any { b := make([]byte, copyBufferSize); return &b }
	r.bigBufs.New = func() any { b := make([]byte, bigBufferSize); return &b }
	r.sealedBufs.New = func() any { b := make([]byte, 0, sealedBufferSize); return &b }
	return r
}

// Relay moves bytes both ways until both directions are done: when one side
// sends FIN the other side's write half is shut and the other direction
// keeps going (half-close); an error on either direction closes both. Each
// direction runs in a goroutine of its own, started here with a small
// stack (the caller's grew during the TLS handshake and is freed when it
// returns); done is called once, from the direction that ends last, and the
// caller closes the conns there. With idle > 0 a connection on which no byte
// arrived from either side for idle ends with closereason.IdleTimeout.
//
// The Result's Reason is ClientClosed or BackendClosed (the side whose
// direction ended first) or IdleTimeout; BackendAcked is as for a flow of
// the event loop.
func (r *Relayer) Relay(client, backend Leg, idle time.Duration, done func(relayloop.Result)) {
	st := &relayState{w: newIdleWatch(client.TCP, backend.TCP, idle), done: done}
	st.pending.Store(2)
	go st.run(r, &st.up, backend, client)
	go st.run(r, &st.down, client, backend)
}

// relayState is what the two directions of one relay share.
type relayState struct {
	w        *idleWatch
	done     func(relayloop.Result)
	pending  atomic.Int32
	idleOut  atomic.Bool  // the idle timeout ended the relay
	up, down relayOutcome // client to backend, backend to client
}

// relayOutcome is how one direction ended.
type relayOutcome struct {
	n   int64
	err error
	at  time.Time
	// acked is, for the backend-to-client direction when it ended before
	// moving a byte, what the backend acknowledged (ackedBy); else -1.
	acked int64
}

// run copies one direction; the second direction to end reports both.
func (st *relayState) run(r *Relayer, out *relayOutcome, dst, src Leg) {
	acked := int64(-1)
	var ack *int64
	if out == &st.down {
		ack = &acked
	}
	n, err, idleOut, at := r.pipe(dst, src, st.w, ack)
	if idleOut {
		st.idleOut.Store(true)
	}
	*out = relayOutcome{n, err, at, acked}
	if st.pending.Add(-1) == 0 {
		st.done(st.result())
	}
}

// result combines the two outcomes; the direction that ended first says who
// closed.
func (st *relayState) result() relayloop.Result {
	u, d := &st.up, &st.down
	res := relayloop.Result{ToBackend: u.n, ToClient: d.n, BackendAcked: -1}
	switch {
	case st.idleOut.Load():
		res.Reason = closereason.IdleTimeout
	case !u.at.After(d.at):
		res.Reason, res.Err = closereason.ClientClosed, u.err
	default:
		res.Reason, res.Err, res.BackendAcked = closereason.BackendClosed, d.err, d.acked
	}
	if res.Err == nil {
		res.Err = firstErr(u.err, d.err)
	}
	return res
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// pipe copies src to dst until EOF or an error. On EOF it shuts dst's write
// half so the peer sees the FIN; on an error it closes both sides so the
// other direction ends too. It reports whether it ended by idle timeout.
// With ack set (src is the backend) and nothing copied, it stores what the
// backend acknowledged before any socket is closed. at is when the source
// ended, taken before the peer can see the FIN or close and react (which
// side closed first is decided by it).
func (r *Relayer) pipe(dst, src Leg, w *idleWatch, ack *int64) (total int64, err error, idleOut bool, at time.Time) {
	for {
		w.arm(dst, src)
		n, err := r.copyOnce(dst, src)
		total += n
		if err != nil && w.enabled() && errors.Is(err, os.ErrDeadlineExceeded) && w.stillActive() {
			continue
		}
		at = time.Now()
		if ack != nil && total == 0 {
			*ack = ackedBy(src.TCP)
		}
		if err == nil {
			closeWrite(dst)
			return total, nil, false, at
		}
		idleOut = errors.Is(err, os.ErrDeadlineExceeded)
		// Unblock the other direction.
		src.Conn.Close()
		dst.Conn.Close()
		if isClosedErr(err) {
			err = nil // closed by the other direction or by shutdown: not this side's fault
		}
		return total, err, idleOut, at
	}
}

// copyOnce copies until EOF or an error. Between two TCP sockets io.Copy
// reaches (*net.TCPConn).ReadFrom, which splices in the kernel: no wrapper
// may ever sit on either side of that call.
func (r *Relayer) copyOnce(dst, src Leg) (int64, error) {
	if dst.Conn == net.Conn(dst.TCP) && src.Conn == net.Conn(src.TCP) {
		return io.Copy(dst.TCP, src.TCP)
	}
	return r.copyBuffered(dst, src)
}

// copyBuffered copies through a pooled buffer. It first waits for the
// source socket to be readable, holding no buffer, so an idle connection
// pins none. For a *tls.Conn source that is safe only over a recordConn:
// then a Read into a buffer of at least one record's plaintext leaves no
// byte buffered inside crypto/tls (see recordConn).
func (r *Relayer) copyBuffered(dst, src Leg) (int64, error) {
	var total int64
	wait := src.Conn == net.Conn(src.TCP) || recordBounded(src.Conn)
	for {
		if wait {
			if err := waitReadable(src.TCP); err != nil {
				return total, err
			}
		}
		n, err := r.copyChunk(dst, src)
		total += n
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// copyChunk makes one read from src (for a *tls.Conn, one record) into a
// pooled buffer and writes what it got to dst. It returns the bytes
// written and the read's error (io.EOF at the end), or the write's.
func (r *Relayer) copyChunk(dst, src Leg) (int64, error) {
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	n, rerr := src.Conn.Read(*bp)
	if n > 0 {
		w, werr := dst.Conn.Write((*bp)[:n])
		if werr != nil {
			return int64(w), werr
		}
	}
	return int64(n), rerr
}

// recordBounded reports whether c is a *tls.Conn that reads through a
// recordConn, so that waiting for its socket is safe between Reads.
func recordBounded(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return false
	}
	_, ok = tc.NetConn().(*recordConn)
	return ok
}

// waitReadable blocks until the socket has bytes (or EOF, or an error) to
// read, honouring its read deadline, without reading them.
func waitReadable(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(readableFD)
}

// readableFD reports whether a socket has bytes, EOF or an error to read
// now, without reading them.
func readableFD(fd uintptr) bool {
	var probe [1]byte
	_, _, e := unix.Recvfrom(int(fd), probe[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return e != unix.EAGAIN
}

// closeWrite passes a FIN (and for TLS a close_notify) on to the peer.
func closeWrite(l Leg) {
	if tc, ok := l.Conn.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	_ = l.TCP.CloseWrite()
}

func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

// ackedBy is relayloop.AckedBytes of an open socket; -1 once it is closed.
func ackedBy(c *net.TCPConn) int64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	acked := int64(-1)
	if rc.Control(func(fd uintptr) { acked = relayloop.AckedBytes(int(fd)) }) != nil {
		return -1
	}
	return acked
}
