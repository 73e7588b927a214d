package testpeer

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/l4edge/l4edge/internal/clienthello"
)

// ClientHello returns the first flight a crypto/tls client with cfg sends:
// its ClientHello, framed as it crosses the wire.
func ClientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, cfg).Handshake() }()
	raw, _, err := clienthello.Read(b, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
