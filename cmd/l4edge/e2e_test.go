//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
)

func plainConfig(listen, backend string, extra string) string {
	return fmt.Sprintf(`
log: {level: info, format: json}
shutdown_grace: 10s
listeners:
  - name: edge
    listen: %s
    routes:
      - name: all
        pool: p
%s
pools:
  p:
    backends:
      - address: %s
`, listen, extra, backend)
}

// The passthrough copy must be spliced in the kernel: run the real binary
// under strace during a 32 MiB transfer and count the bytes splice(2)
// moved. A relay that copied in user space would move none.
func TestSpliceUsedForPassthrough(t *testing.T) {
	addr := testpeer.FreeAddrs(t, 1)[0]
	tracedEcho(t, plainConfig(addr, testpeer.Echo(t).Addr(), ""), addr, func() *net.TCPConn { return testpeer.Dial(t, addr) })
}

// tracedEcho runs l4edge with yaml under strace, echoes 32 MiB through
// addr on a connection from dial (half-closed after the upload), and fails
// unless splice(2) moved nearly all of it.
func tracedEcho(t *testing.T, yaml, addr string, dial func() *net.TCPConn) {
	t.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: strace not installed; `make test` installs it (apt-get install strace)")
	}
	trace := filepath.Join(t.TempDir(), "strace.out")
	cmd := exec.Command(strace, "-f", "-qq", "-e", "trace=splice", "-o", trace,
		filepath.Join(binDir, "l4edge"), "run", "-config", writeConfig(t, yaml))
	p := startCmd(t, cmd)
	waitListening(t, addr, 20*time.Second)
	traced := tracedChild(t, cmd.Process.Pid)
	t.Cleanup(func() { _ = syscall.Kill(traced, syscall.SIGKILL) }) // runs before strace's own cleanup

	payload := make([]byte, 32<<20)
	_, _ = rand.Read(payload)
	echoOver(t, dial(), payload)
	// strace does not pass signals on: stop the traced l4edge itself.
	if err := syscall.Kill(traced, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	calls := regexp.MustCompile(`splice\(`).FindAll(out, -1)
	moved := 0
	for _, m := range regexp.MustCompile(`(?m)splice.* = (\d+)$`).FindAllSubmatch(out, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		moved += n
	}
	// Each byte crosses two splices per direction (socket->pipe->socket).
	// The relay copies a read that does not fill its 16 KiB buffer and
	// splices from the first one that does, so only the start of each burst
	// is copied: at least 99% must be spliced.
	if want := 2 * 2 * len(payload) / 100 * 99; moved < want {
		t.Fatalf("splice moved %d bytes in %d calls; want at least %d (the copy is not spliced)", moved, len(calls), want)
	}
	t.Logf("%d splice calls moved %d bytes", len(calls), moved)
}

// tracedChild returns the PID of the process strace started.
func tracedChild(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		t.Fatal("strace has no child")
	}
	child, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return child
}

// SIGTERM with an open, busy connection: it finishes within shutdown_grace,
// new connections are refused meanwhile, and the process exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	slow := testpeer.Serve(t, func(c *net.TCPConn) {
		// Stream for 1.5s after the first byte, then end.
		// Read all the client sends ("go"): a close with unread bytes
		// would be a reset.
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil {
			return // a readiness probe
		}
		end := time.Now().Add(1500 * time.Millisecond)
		chunk := bytes.Repeat([]byte("x"), 1024)
		for time.Now().Before(end) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}).Addr()
	addr := testpeer.FreeAddrs(t, 1)[0]
	p := startL4edge(t, plainConfig(addr, slow, ""), addr)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("go"))
	time.Sleep(200 * time.Millisecond)
	p.signal(syscall.SIGTERM)
	p.waitLog(5*time.Second, "stopping")
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Fatal("a new connection was accepted during drain")
	}
	got, err := io.ReadAll(c)
	if err != nil || len(got) < 50*1024 {
		t.Fatalf("busy connection got %d bytes, err %v; want the whole stream", len(got), err)
	}
	c.Close() // the client's half ends too, as a client's would at EOF
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	logs := p.accessLogs()
	if last := logs[len(logs)-1]; last["close"] != "backend_closed" || last["bytes_to_client"].(float64) < 50*1024 {
		t.Fatalf("access log %v, want the busy connection to end backend_closed", last)
	}
}

// Out of descriptors, the accept loop backs off instead of spinning, logs
// once per interval, and recovers when descriptors free up. Two limits one
// apart make both ways of running out happen whatever l4edge holds at
// start: accept4 failing, and accept4 taking the last descriptor so that
// the backend socket fails.
func TestEMFILEBackoff(t *testing.T) {
	causes := map[string]bool{}
	for _, limit := range []int{48, 49} {
		t.Run(fmt.Sprintf("ulimit-%d", limit), func(t *testing.T) { causes[testEMFILEBackoff(t, limit)] = true })
	}
	if !t.Failed() && (!causes["accept4"] || !causes["socket"]) {
		t.Fatalf("back-off causes seen %v; want both accept4 and the backend socket", causes)
	}
}

// testEMFILEBackoff runs l4edge under a descriptor limit and returns what
// ran out first: "accept4" or the backend "socket".
func testEMFILEBackoff(t *testing.T, limit int) string {
	back := testpeer.Echo(t).Addr()
	addr := testpeer.FreeAddrs(t, 1)[0]
	cfg := writeConfig(t, plainConfig(addr, back, ""))
	// Go raises the soft limit to the hard one at start, so lower both.
	cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" run -config "$1"`, limit), filepath.Join(binDir, "l4edge"), cfg)
	// One event loop, so accept4 and the backend socket take descriptors
	// in turn: with two loops accepting at once, which call meets the
	// limit first is a race, and both limits may see the same cause.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	p := startCmd(t, cmd)
	waitListening(t, addr, 10*time.Second)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Each proxied connection costs l4edge two descriptors: exhaust them.
	for i := 0; i < 40; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	failed := p.waitLog(10*time.Second, "accept failed")
	cause := ""
	switch {
	case strings.Contains(failed, "accept4: too many open files"):
		cause = "accept4"
	case strings.Contains(failed, "socket: too many open files"):
		cause = "socket"
	default:
		t.Fatalf("accept back-off for an unexpected cause: %s", failed)
	}
	time.Sleep(time.Second)
	if n := p.countLog("accept failed"); n > 1 {
		t.Fatalf("%d accept-failure lines within a second: the log is flooded", n)
	}
	cpu := childCPU(t, p.cmd.Process.Pid)
	time.Sleep(time.Second)
	if used := childCPU(t, p.cmd.Process.Pid) - cpu; used > 300*time.Millisecond {
		t.Fatalf("accept loop used %s CPU in 1s while out of descriptors: it spins", used)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	time.Sleep(1500 * time.Millisecond) // the back-off is at most 1s
	echoRoundTrip(t, addr, []byte("after the storm"))
	p.waitLog(5*time.Second, "accept recovered")
	if n := p.countLog("backend state changed"); n != 0 {
		t.Fatalf("running out of local descriptors marked the backend down (%d state changes)", n)
	}
	return cause
}

// childCPU reads a process's user+system CPU time from /proc.
func childCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
}

func TestValidateCommand(t *testing.T) {
	good := writeConfig(t, plainConfig("127.0.0.1:0", "127.0.0.1:1", ""))
	out, err := exec.Command(filepath.Join(binDir, "l4edge"), "validate", "-config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("validate good file: %v\n%s", err, out)
	}
	bad := writeConfig(t, "listeners:\n  - name: a\n    listen: nonsense\n    routes: [{pool: nope}]\nbogus: 1\n")
	cmd := exec.Command(filepath.Join(binDir, "l4edge"), "validate", "-config", bad)
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("exit %d, want 1\n%s", cmd.ProcessState.ExitCode(), out)
	}
	for _, want := range []string{"bogus", "(line 5)", `unknown pool "nope"`, "listeners[0].listen"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	cmd = exec.Command(filepath.Join(binDir, "l4edge"), "frobnicate")
	_ = cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("bad usage exit %d, want 2", cmd.ProcessState.ExitCode())
	}
	out, err = exec.Command(filepath.Join(binDir, "l4edge"), "version").Output()
	if err != nil || !strings.Contains(string(out), "go1.") {
		t.Fatalf("version: %v %s", err, out)
	}
}

// A port already in use is a fatal start-up error with exit code 1 and a
// message naming the listener.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := writeConfig(t, plainConfig(ln.Addr().String(), "127.0.0.1:1", ""))
	p := startProc(t, filepath.Join(binDir, "l4edge"), "run", "-config", cfg)
	if code := p.wait(10 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	p.waitLog(time.Second, "listeners[0].listen", "already in use")
}
