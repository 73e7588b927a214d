//go:build linux

package relayloop

import "golang.org/x/sys/unix"

// AckedBytes returns how many bytes of data the peer of a connected TCP
// socket has acknowledged, from TCP_INFO, or -1 when the socket cannot
// tell. Linux counts the SYN in tcpi_bytes_acked; it is left out here, so
// 0 means the peer never took a byte that was sent to it.
func AckedBytes(fd int) int64 {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return -1
	}
	return max(int64(ti.Bytes_acked)-1, 0)
}
