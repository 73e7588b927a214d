//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// notifySocket listens on a unixgram socket as systemd does for NOTIFY_SOCKET.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{t: t, conn: conn, path: path}
}

// next returns the next message other than WATCHDOG=1.
func (n *notifySocket) next(timeout time.Duration) string {
	n.t.Helper()
	for {
		msg := n.read(timeout)
		if msg != "WATCHDOG=1" {
			return msg
		}
	}
}

func (n *notifySocket) read(timeout time.Duration) string {
	n.t.Helper()
	buf := make([]byte, 4096)
	_ = n.conn.SetReadDeadline(time.Now().Add(timeout))
	k, err := n.conn.Read(buf)
	if err != nil {
		n.t.Fatalf("no sd_notify message within %s: %v", timeout, err)
	}
	return string(buf[:k])
}

func monotonicUsec(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// l4edge under a real notification socket: READY=1 only once every one of
// 100 listeners and the admin API accept (binding them takes long enough
// that a READY=1 sent before would be caught), RELOADING=1 with MONOTONIC_USEC then READY=1
// around SIGHUP, WATCHDOG=1 every half WATCHDOG_USEC, STOPPING=1 on SIGTERM.
func TestSdNotify(t *testing.T) {
	ns := listenNotify(t)
	const n = 100
	ports := testpeer.FreePorts(t, n+1)
	adminAddr := fmt.Sprintf("127.0.0.1:%d", ports[n])
	var listeners []string
	yaml := fmt.Sprintf("log: {level: info, format: json}\nadmin: {listen: %s}\npools: {p: {backends: [{address: %s}]}}\nlisteners:\n", adminAddr, testpeer.Echo(t).Addr())
	for i := range n {
		listeners = append(listeners, fmt.Sprintf("127.0.0.1:%d", ports[i]))
		yaml += fmt.Sprintf("  - {name: l%d, listen: %s, routes: [{name: all, pool: p}]}\n", i, listeners[i])
	}
	addr := listeners[n-1]
	cfg := writeConfig(t, yaml)
	cmd := exec.Command(filepath.Join(binDir, "l4edge"), "run", "-config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.path, "WATCHDOG_USEC=300000")
	p := startCmd(t, cmd)

	if msg := ns.next(10 * time.Second); !strings.HasPrefix(msg, "READY=1\n") || !strings.Contains(msg, "STATUS=serving 100 listeners") {
		t.Fatalf("first message %q, want READY=1 with a STATUS", msg)
	}
	for _, a := range append([]string{adminAddr}, listeners...) { // once, no retry: bound before READY=1
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			t.Fatalf("READY=1 sent but %s does not accept: %v", a, err)
		}
		c.Close()
	}
	echoRoundTrip(t, addr, []byte("ready"))

	start, pings := time.Now(), 0
	for time.Since(start) < 1200*time.Millisecond {
		if ns.read(time.Second) == "WATCHDOG=1" {
			pings++
		}
	}
	if pings < 5 { // every 150 ms: 8 expected in 1.2 s
		t.Fatalf("%d WATCHDOG=1 in 1.2 s with WATCHDOG_USEC=300000, want about 8", pings)
	}

	before := monotonicUsec(t)
	p.signal(syscall.SIGHUP)
	msg := ns.next(5 * time.Second)
	lines := strings.Split(msg, "\n")
	if len(lines) < 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("after SIGHUP %q, want RELOADING=1 and MONOTONIC_USEC", msg)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > monotonicUsec(t) {
		t.Fatalf("MONOTONIC_USEC %q not between %d and now", lines[1], before)
	}
	if msg := ns.next(5 * time.Second); !strings.HasPrefix(msg, "READY=1") {
		t.Fatalf("after RELOADING %q, want READY=1", msg)
	}
	p.waitLog(5*time.Second, "configuration reloaded")

	// A refused reload still ends the reloading state, and says so.
	if err := os.WriteFile(cfg, []byte("listeners: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	if msg := ns.next(5 * time.Second); !strings.HasPrefix(msg, "RELOADING=1\n") {
		t.Fatalf("after a second SIGHUP %q, want RELOADING=1", msg)
	}
	if msg := ns.next(5 * time.Second); !strings.HasPrefix(msg, "READY=1\n") || !strings.Contains(msg, "reload was refused") {
		t.Fatalf("after a refused reload %q, want READY=1 and a STATUS saying so", msg)
	}

	p.signal(syscall.SIGTERM)
	if msg := ns.next(5 * time.Second); !strings.HasPrefix(msg, "STOPPING=1") {
		t.Fatalf("after SIGTERM %q, want STOPPING=1", msg)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

// A NOTIFY_SOCKET nobody listens on is logged and l4edge serves anyway.
func TestSdNotifySocketMissing(t *testing.T) {
	addr := testpeer.FreeAddrs(t, 1)[0]
	cmd := exec.Command(filepath.Join(binDir, "l4edge"), "run", "-config", writeConfig(t, fmt.Sprintf(`
log: {level: info, format: json}
listeners: [{name: edge, listen: %s, routes: [{name: all, pool: p}]}]
pools: {p: {backends: [{address: %s}]}}
`, addr, testpeer.Echo(t).Addr())))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(t.TempDir(), "absent.sock"))
	p := startCmd(t, cmd)
	waitListening(t, addr, 10*time.Second)
	p.waitLog(5*time.Second, "cannot reach systemd's notification socket")
	echoRoundTrip(t, addr, []byte("still serving"))
}
