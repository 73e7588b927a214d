//go:build linux

package tlsrelay

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync"
)

// Server returns the server side of a TLS connection over conn (the client
// socket, or a reader that replays the ClientHello bytes first). Its reads
// of conn stop at the end of each TLS record, so once a Read has returned a
// record's plaintext every byte not yet read is still in the kernel: Relay
// and Park may then wait for the socket's readability holding no buffer,
// and Park batches its writes. The handshake therefore leaves nothing
// buffered, which StartInLoop needs too; there the event loop's transport
// replaces conn. Terminated connections are made with it.
func Server(conn net.Conn, cfg *tls.Config) *tls.Conn {
	return tls.Server(&recordConn{Conn: conn}, cfg)
}

// tlsRecordHeaderLen is the size of a TLS record header: type, version,
// length.
const tlsRecordHeaderLen = 5

// recordConn sits under a server-side *tls.Conn and never returns bytes past
// the end of the TLS record being read. crypto/tls otherwise reads ahead
// into its own buffer (a client's Finished and first data record often
// arrive in one segment), and bytes buffered there are invisible to a
// readiness wait on the socket: a relay that waits for the socket before
// calling tls.Conn.Read would then block with a record already received.
// With this reader, once tls.Conn.Read has returned a whole record's
// plaintext, every byte not yet read is still in the kernel, so an idle
// terminated connection can wait for readability holding no buffer.
//
// It embeds net.Conn, not *net.TCPConn, so nothing can bypass Read.
//
// On the write side it can batch: between startBatch and flush, the records
// crypto/tls writes are collected and sent with one write(2), so a 64 KiB
// plaintext chunk costs one system call instead of four.
type recordConn struct {
	net.Conn
	hdr       [tlsRecordHeaderLen]byte
	hdrN      int // header bytes of the current record read so far
	remaining int // body bytes of the current record not yet read

	wmu   sync.Mutex
	batch *[]byte // non-nil while batching; from the pool
	pool  *sync.Pool

	// inLoop is set once an event loop relays the connection (see
	// StartInLoop): Conn is then the loop's non-blocking transport, which
	// needs no record bound, and only the loop's goroutine uses it.
	inLoop bool
}

// bindLoop makes c, an event loop's transport, the one the connection
// reads and writes from now on (relayloop.StartSession's bind).
func (r *recordConn) bindLoop(c net.Conn) { r.Conn, r.inLoop = c, true }

// Write sends p, or adds it to the batch.
func (r *recordConn) Write(p []byte) (int, error) {
	if r.inLoop {
		return r.Conn.Write(p) // the loop's transport batches
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.batch != nil {
		*r.batch = append(*r.batch, p...)
		return len(p), nil
	}
	return r.Conn.Write(p)
}

// startBatch collects the following writes in a buffer from pool until
// flush. Writes from other goroutines (a KeyUpdate answer) join the batch
// in order.
func (r *recordConn) startBatch(pool *sync.Pool) {
	r.wmu.Lock()
	r.pool = pool
	r.batch = pool.Get().(*[]byte)
	*r.batch = (*r.batch)[:0]
	r.wmu.Unlock()
}

// flush sends the batch with one write and ends batching. It holds the
// write lock throughout, so no later write can overtake the batch.
func (r *recordConn) flush() error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	b := r.batch
	if b == nil {
		return nil
	}
	r.batch = nil
	_, err := r.Conn.Write(*b)
	r.pool.Put(b)
	return err
}

// Read returns bytes of the current record only: first its header, then its
// body; a new header is read once the body is done.
func (r *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.inLoop {
		return r.Conn.Read(p)
	}
	if r.remaining == 0 && r.hdrN == tlsRecordHeaderLen {
		r.hdrN = 0 // the last record is done (or had an empty body)
	}
	if r.hdrN < tlsRecordHeaderLen {
		want := min(len(p), tlsRecordHeaderLen-r.hdrN)
		n, err := r.Conn.Read(p[:want])
		copy(r.hdr[r.hdrN:], p[:n])
		r.hdrN += n
		if r.hdrN == tlsRecordHeaderLen {
			r.remaining = int(binary.BigEndian.Uint16(r.hdr[3:]))
		}
		return n, err
	}
	n, err := r.Conn.Read(p[:min(len(p), r.remaining)])
	r.remaining -= n
	return n, err
}
