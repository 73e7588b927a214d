package testpeer

import (
	"io"
	"net"
	"testing"
	"time"
)

// EchoOnce writes msg on c and fails the test unless the same bytes come
// back within 5 seconds.
func EchoOnce(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, got, err)
	}
	_ = c.SetDeadline(time.Time{})
}

// Dial connects to addr within 2 seconds and fails the test otherwise.
func Dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}
