//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// binDir holds l4edge and wsecho built once for the package's tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "l4edge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, pkg := range []string{"github.com/l4edge/l4edge/cmd/l4edge", "github.com/l4edge/l4edge/cmd/wsecho"} {
		out, err := exec.Command("go", "build", "-o", dir, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a child process whose standard error is kept, line by line.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []string
	done chan struct{}
	err  error
}

// startProc starts a command; the test's cleanup kills it by PID if it is
// still running.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(name, args...))
}

func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, cmd: cmd, done: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs = append(p.logs, sc.Text())
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			// SIGTERM first: nginx's master stops its workers only then.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				select {
				case <-p.done:
				case <-time.After(5 * time.Second):
					// A grandchild still holds stderr open; do not hang the suite.
					t.Logf("%s: output still open after kill", filepath.Base(cmd.Path))
				}
			}
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), strings.Join(p.lines(), "\n"))
		}
	})
	return p
}

func (p *proc) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// waitLog waits until a log line contains every one of parts.
func (p *proc) waitLog(timeout time.Duration, parts ...string) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, l := range p.lines() {
			if containsAll(l, parts...) {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("no log line with %q within %s", parts, timeout)
	return ""
}

// countLog counts log lines containing every one of parts.
func (p *proc) countLog(parts ...string) int {
	n := 0
	for _, l := range p.lines() {
		if containsAll(l, parts...) {
			n++
		}
	}
	return n
}

func containsAll(s string, parts ...string) bool {
	for _, part := range parts {
		if !strings.Contains(s, part) {
			return false
		}
	}
	return true
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s", p.cmd.Path, timeout)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatal(p.err)
	return -1
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// accessLogs returns the decoded "connection" entries logged so far.
func (p *proc) accessLogs() []map[string]any {
	var out []map[string]any
	for _, l := range p.lines() {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "connection" {
			out = append(out, m)
		}
	}
	return out
}

// writeConfig writes a YAML file into the test's temp dir.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "l4edge.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startL4edge runs the built binary on a config and waits until addr accepts.
func startL4edge(t *testing.T, config string, addr string) *proc {
	t.Helper()
	p := startProc(t, filepath.Join(binDir, "l4edge"), "run", "-config", writeConfig(t, config))
	waitListening(t, addr, 10*time.Second)
	return p
}

// waitListening polls until addr accepts a TCP connection.
func waitListening(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not accepting within %s", addr, timeout)
}

// echoRoundTrip sends b through addr and checks it comes back.
func echoRoundTrip(t *testing.T, addr string, b []byte) {
	t.Helper()
	echoOver(t, testpeer.Dial(t, addr), b)
}

// echoOver sends b on c, half-closes it and wants b back before EOF; it
// closes c.
func echoOver(t *testing.T, c *net.TCPConn, b []byte) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = c.Write(b); _ = c.CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("echo through %s: %d of %d bytes back, err %v", c.RemoteAddr(), len(got), len(b), err)
	}
}

// poolStatus reads one pool from GET /status: whether it is in panic and
// each backend's state by address.
func poolStatus(t *testing.T, adminAddr, pool string) (inPanic bool, states map[string]string) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Pools []struct {
			Name     string
			Panic    bool
			Backends []struct{ Address, State string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	for _, p := range st.Pools {
		if p.Name == pool {
			states = map[string]string{}
			for _, b := range p.Backends {
				states[b.Address] = b.State
			}
			return p.Panic, states
		}
	}
	t.Fatalf("GET /status: no pool %q", pool)
	return false, nil
}

// edgeConfig is one listener "edge" on listen in front of pool "p" of the
// given backends (log at info, as JSON); admin, when not "", is the admin
// listener; pool holds more keys of the pool, each line indented four
// spaces and ending in a newline.
func edgeConfig(listen, admin, pool string, backends ...string) string {
	var b strings.Builder
	b.WriteString("log: {level: info, format: json}\n")
	if admin != "" {
		fmt.Fprintf(&b, "admin: {listen: %s}\n", admin)
	}
	fmt.Fprintf(&b, "listeners:\n  - name: edge\n    listen: %s\n    routes: [{name: all, pool: p}]\n", listen)
	b.WriteString("pools:\n  p:\n    connect_timeout: 1s\n")
	b.WriteString(pool)
	b.WriteString("    backends:\n")
	for _, a := range backends {
		fmt.Fprintf(&b, "      - address: %s\n", a)
	}
	return b.String()
}
