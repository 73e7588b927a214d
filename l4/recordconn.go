package l4

import (
	"encoding/binary"
	"net"
)

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
type recordConn struct {
	net.Conn
	hdr       [tlsRecordHeaderLen]byte
	hdrN      int // header bytes of the current record read so far
	remaining int // body bytes of the current record not yet read
}

// Read returns bytes of the current record only: first its header, then its
// body; a new header is read once the body is done.
func (r *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
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
