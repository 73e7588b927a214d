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
