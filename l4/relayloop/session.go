//go:build linux

package relayloop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Session is a protocol a flow speaks with its client: terminated TLS, a
// *tls.Conn. The loop reads the plaintext the client sent with Read, hands
// what the backend sent to Write, and at the backend's FIN calls
// CloseWrite (a close_notify). The session must reach the client socket
// only through the net.Conn StartSession binds it to, and it is used only
// from the loop's goroutine.
type Session interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	CloseWrite() error
}

// StartSession is Start for a client spoken to through s (terminated TLS):
// the flow is relayed in the loop like a plain one, with no goroutine and
// no buffer while idle, and the session's bytes move through non-blocking
// system calls in the loop's goroutine. Before the flow is registered, bind
// is given the net.Conn that s must use as its transport from then on. On
// an error nothing was registered and the caller still owns the sockets
// (and s, whose transport it must restore).
func (r *Relay) StartSession(f *Flow, client *net.TCPConn, s Session, bind func(net.Conn), backend *net.TCPConn, idle time.Duration, done Done) error {
	return startSession(f, client, s, bind, func(clientFD int) error {
		return r.StartFD(f, clientFD, backend, idle, done)
	})
}

// StartSessionConnecting is StartSession for a backend socket whose
// nonblocking connect is in progress, as StartConnecting: the loop
// completes the connect (asking c for the next attempt when one fails),
// and the session's bytes move once c.Connected says so. Records the
// client sends meanwhile wait in its socket. The flow owns backendFD once
// this succeeds; on an error the caller still owns it, the client socket
// and s, as with StartSession.
func (r *Relay) StartSessionConnecting(f *Flow, client *net.TCPConn, s Session, bind func(net.Conn), backendFD int, connectTimeout time.Duration, c Connector) error {
	return startSession(f, client, s, bind, func(clientFD int) error {
		return r.StartConnecting(f, clientFD, backendFD, connectTimeout, c)
	})
}

// startSession gives f the session s over client, binds it, and takes the
// client socket over with startFD (takeClient); on an error f has no
// session again.
func startSession(f *Flow, client *net.TCPConn, s Session, bind func(net.Conn), startFD func(clientFD int) error) error {
	f.sess = &session{s: s, f: f, local: client.LocalAddr(), remote: client.RemoteAddr()}
	bind(f.sess)
	if err := takeClient(client, startFD); err != nil {
		f.sess = nil
		return err
	}
	return nil
}

// session is a flow's Session and the client transport bound to it: a
// net.Conn over the flow's client descriptor. Its reads never block (an
// empty socket reads as errWouldBlock, which crypto/tls keeps no record
// of); its writes collect in out, which the backend-to-client direction
// flushes when the socket can take bytes.
type session struct {
	s             Session
	f             *Flow
	out           *[]byte // sealed bytes not yet written; nil when none
	outOff        int     // bytes of out already written
	notified      bool    // CloseWrite was called
	local, remote net.Addr
}

// maxSessionOut bounds the sealed bytes a session may hold for a client
// that does not read: the backend-to-client direction adds at most one
// read's worth (sessionBufSize plus record overhead) to an empty out, so
// only writes the client provokes without reading (answers to KeyUpdate
// requests) can reach it; they end the flow instead of growing it.
const maxSessionOut = 4 * sessionBufSize

// sessionBufSize is what one step reads for a session flow: four TLS
// records of plaintext towards the backend, or four records' worth to seal
// towards the client, so bulk traffic costs one write per 64 KiB. The
// stash in a pipe (see forward) holds it.
const sessionBufSize = 64 << 10

// maxRecordPlaintext is the most plaintext one TLS record carries.
const maxRecordPlaintext = 16 << 10

// errWouldBlock is what a session's transport reads when the socket has no
// bytes now: temporary, so crypto/tls keeps a partial record and retries.
var errWouldBlock error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "relay: socket has no bytes now" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

// Read reads the client socket without blocking.
func (s *session) Read(p []byte) (int, error) {
	if !s.f.dirs[0].readable || len(p) == 0 {
		return 0, errWouldBlock
	}
	n, err := s.f.readSource(0, p)
	if err != nil && err != errWouldBlock && err != io.EOF {
		err = &net.OpError{Op: "read", Net: "tcp", Source: s.local, Addr: s.remote, Err: os.NewSyscallError("read", err)}
	}
	return n, err
}

// Write adds p to the bytes the loop sends the client.
func (s *session) Write(p []byte) (int, error) {
	if s.out == nil {
		s.out = s.f.loop.getOut()
		s.outOff = 0
	}
	if len(*s.out)+len(p) > maxSessionOut {
		return 0, fmt.Errorf("relay: the client has not read %d sealed bytes (at most %d may wait); ending the connection", len(*s.out)-s.outOff, maxSessionOut)
	}
	*s.out = append(*s.out, p...)
	return len(p), nil
}

// Close does nothing: the loop closes the socket when the flow ends.
func (s *session) Close() error { return nil }

// LocalAddr is the client socket's local address.
func (s *session) LocalAddr() net.Addr { return s.local }

// RemoteAddr is the client's address.
func (s *session) RemoteAddr() net.Addr { return s.remote }

// SetDeadline does nothing: the loop keeps the flow's timeouts.
func (s *session) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing, as SetDeadline.
func (s *session) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing, as SetDeadline.
func (s *session) SetWriteDeadline(time.Time) error { return nil }

// pendingOut reports whether sealed bytes wait for the client.
func (s *session) pendingOut() bool { return s != nil && s.out != nil }

// flushOut writes the sealed bytes to the client while it takes them. It
// reports false when the client's socket is full (or failed the flow).
func (l *loop) flushOut(f *Flow) bool {
	s, ds := f.sess, &f.dirs[1]
	for s.out != nil {
		if !ds.writable {
			return false
		}
		n, err := unix.Write(f.fds[0], (*s.out)[s.outOff:])
		if !l.wrote(f, 1, err) {
			return false
		}
		if err != nil {
			continue // interrupted
		}
		s.outOff += n
		if s.outOff == len(*s.out) {
			l.putOut(s.out)
			s.out = nil
		}
	}
	return true
}

// sessionIn reads one step for a session flow: what the client sent,
// opened, written on to the backend (direction 0), or what the backend
// sent, sealed for the client (direction 1).
func (l *loop) sessionIn(f *Flow, d int) bool {
	if l.sbuf == nil {
		l.sbuf = make([]byte, sessionBufSize)
	}
	if d == 0 {
		return l.openIn(f)
	}
	return l.sealIn(f)
}

// openIn reads plaintext from the session, up to four records, and
// forwards it to the backend.
func (l *loop) openIn(f *Flow) bool {
	ds, buf, n := &f.dirs[0], l.sbuf, 0
	var err error
	for len(buf)-n >= maxRecordPlaintext {
		var m int
		m, err = f.sess.s.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
	}
	switch {
	case err == nil:
		// Stopped for room: the session may hold whole records already
		// read from the socket, which no event will announce.
		ds.readable = true
	case errors.Is(err, errWouldBlock):
	case errors.Is(err, io.EOF):
		ds.eof = true
	default:
		l.fail(f, 0, fmt.Errorf("read from client: %w", err))
		return false
	}
	if n == 0 {
		return true
	}
	return l.forward(f, 0, f.fds[1], buf[:n])
}

// sealIn reads what the backend sent and seals it for the client; the next
// step flushes it.
func (l *loop) sealIn(f *Flow) bool {
	n, ok := l.readIn(f, 1, l.sbuf)
	if n == 0 {
		return ok
	}
	if _, err := f.sess.s.Write(l.sbuf[:n]); err != nil {
		l.fail(f, 0, fmt.Errorf("seal for client: %w", err))
		return false
	}
	f.bytes[1].Add(int64(n))
	return true
}

// closeNotify tells the client that the backend sent everything (a TLS
// close_notify), once; the next step flushes it before the FIN.
func (l *loop) closeNotify(f *Flow) {
	f.sess.notified = true
	_ = f.sess.s.CloseWrite() // an error is the flow's own failure, seen elsewhere
}

// endSession gives a finished flow's buffer back, after one try to send
// what it still holds (an alert, say).
func (l *loop) endSession(f *Flow) {
	s := f.sess
	if s.out == nil {
		return
	}
	_, _ = unix.Write(f.fds[0], (*s.out)[s.outOff:])
	l.putOut(s.out)
	s.out = nil
}

// getOut returns an empty buffer for sealed bytes.
func (l *loop) getOut() *[]byte {
	if n := len(l.outs); n > 0 {
		b := l.outs[n-1]
		l.outs = l.outs[:n-1]
		return b
	}
	b := make([]byte, 0, outBufSize)
	return &b
}

// putOut keeps a buffer for reuse, up to maxFreeOuts; one that grew past
// outBufSize is dropped.
func (l *loop) putOut(b *[]byte) {
	if len(l.outs) < maxFreeOuts && cap(*b) <= outBufSize {
		*b = (*b)[:0]
		l.outs = append(l.outs, b)
	}
}

// maxFreeOuts bounds the sealed-byte buffers a loop keeps for reuse.
const maxFreeOuts = 16

// outBufSize is a sealed-byte buffer's size: one step's plaintext sealed
// (sessionBufSize and four records' overhead) fits with room to spare.
const outBufSize = sessionBufSize + 8<<10
