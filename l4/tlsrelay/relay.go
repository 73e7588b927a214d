package l4

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

// leg is one side of a relayed connection: conn is what bytes are read from
// and written to (the TCP socket itself, or a *tls.Conn over it), tcp is the
// socket underneath.
type leg struct {
	conn net.Conn
	tcp  *net.TCPConn
}

// relayResult is what a relay reports back: the bytes moved each way, which
// side ended the connection, and the error behind an abnormal end.
type relayResult struct {
	toBackend int64
	toClient  int64
	reason    closereason.Reason
	err       error
	// backendAcked is what relayloop.Result.BackendAcked says: the bytes
	// the backend acknowledged, known (>= 0) only when it ended the
	// connection before sending a byte.
	backendAcked int64
}

// relayer moves bytes between a client and a backend. It holds the copy
// buffers for legs that cannot splice (terminated TLS).
type relayer struct {
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

func newRelayer() *relayer {
	r := &relayer{}
	r.bufs.New = func() any { b := make([]byte, copyBufferSize); return &b }
	r.bigBufs.New = func() any { b := make([]byte, bigBufferSize); return &b }
	r.sealedBufs.New = func() any { b := make([]byte, 0, sealedBufferSize); return &b }
	return r
}

// relay moves bytes both ways until both directions are done: when one side
// sends FIN the other side's write half is shut and the other direction
// keeps going (half-close); an error on either direction closes both. Each
// direction runs in a goroutine of its own, started here with a small
// stack (the caller's grew during the TLS handshake and is freed when it
// returns); done is called once, from the direction that ends last, and the
// caller closes the conns there. With idle > 0 a connection on which no byte
// arrived from either side for idle ends with idle_timeout.
func (r *relayer) relay(client, backend leg, idle time.Duration, done func(relayResult)) {
	st := &relayState{w: newIdleWatch(client.tcp, backend.tcp, idle), done: done}
	st.pending.Store(2)
	go st.run(r, &st.up, backend, client)
	go st.run(r, &st.down, client, backend)
}

// relayState is what the two directions of one relay share.
type relayState struct {
	w        *idleWatch
	done     func(relayResult)
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
func (st *relayState) run(r *relayer, out *relayOutcome, dst, src leg) {
	acked := int64(-1)
	var ack *int64
	if out == &st.down {
		ack = &acked
	}
	n, err, idleOut := r.pipe(dst, src, st.w, ack)
	if idleOut {
		st.idleOut.Store(true)
	}
	*out = relayOutcome{n, err, time.Now(), acked}
	if st.pending.Add(-1) == 0 {
		st.done(st.result())
	}
}

// result combines the two outcomes; the direction that ended first says who
// closed.
func (st *relayState) result() relayResult {
	u, d := &st.up, &st.down
	res := relayResult{toBackend: u.n, toClient: d.n, backendAcked: -1}
	switch {
	case st.idleOut.Load():
		res.reason = closereason.IdleTimeout
	case !u.at.After(d.at):
		res.reason, res.err = closereason.ClientClosed, u.err
	default:
		res.reason, res.err, res.backendAcked = closereason.BackendClosed, d.err, d.acked
	}
	if res.err == nil {
		res.err = firstErr(u.err, d.err)
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
// backend acknowledged before any socket is closed.
func (r *relayer) pipe(dst, src leg, w *idleWatch, ack *int64) (total int64, err error, idleOut bool) {
	for {
		w.arm(dst, src)
		n, err := r.copyOnce(dst, src)
		total += n
		if err != nil && w.enabled() && errors.Is(err, os.ErrDeadlineExceeded) && w.stillActive() {
			continue
		}
		if ack != nil && total == 0 {
			*ack = ackedBy(src.tcp)
		}
		if err == nil {
			closeWrite(dst)
			return total, nil, false
		}
		idleOut = errors.Is(err, os.ErrDeadlineExceeded)
		// Unblock the other direction.
		src.conn.Close()
		dst.conn.Close()
		if isClosedErr(err) {
			err = nil // closed by the other direction or by shutdown: not this side's fault
		}
		return total, err, idleOut
	}
}

// copyOnce copies until EOF or an error. Between two TCP sockets io.Copy
// reaches (*net.TCPConn).ReadFrom, which splices in the kernel: no wrapper
// may ever sit on either side of that call.
func (r *relayer) copyOnce(dst, src leg) (int64, error) {
	if dst.conn == net.Conn(dst.tcp) && src.conn == net.Conn(src.tcp) {
		return io.Copy(dst.tcp, src.tcp)
	}
	return r.copyBuffered(dst, src)
}

// copyBuffered copies through a pooled buffer. It first waits for the
// source socket to be readable, holding no buffer, so an idle connection
// pins none. For a *tls.Conn source that is safe only over a recordConn:
// then a Read into a buffer of at least one record's plaintext leaves no
// byte buffered inside crypto/tls (see recordConn).
func (r *relayer) copyBuffered(dst, src leg) (int64, error) {
	var total int64
	wait := src.conn == net.Conn(src.tcp) || recordBounded(src.conn)
	for {
		if wait {
			if err := waitReadable(src.tcp); err != nil {
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
func (r *relayer) copyChunk(dst, src leg) (int64, error) {
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	n, rerr := src.conn.Read(*bp)
	if n > 0 {
		w, werr := dst.conn.Write((*bp)[:n])
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
func closeWrite(l leg) {
	if tc, ok := l.conn.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	_ = l.tcp.CloseWrite()
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
