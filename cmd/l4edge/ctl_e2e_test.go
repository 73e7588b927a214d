//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/tlsterm"
)

// cli runs the built l4edge with args, its output in pipes (not a terminal).
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "l4edge"), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(o.String()+e.String(), "\x1b[") {
		t.Fatalf("l4edge %s wrote colour codes to a pipe:\n%q", strings.Join(args, " "), o.String())
	}
	return o.String(), e.String(), code
}

// wantLines checks output line by line: each line's whitespace-separated
// fields, and that every column of a table starts where its heading does.
func wantLines(t *testing.T, out string, want [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	var head string
	for i, l := range lines {
		if got := strings.Fields(l); strings.Join(got, "|") != strings.Join(want[i], "|") {
			t.Fatalf("line %d: %q\nwant fields %q\noutput:\n%s", i+1, l, want[i], out)
		}
		if l != strings.TrimRight(l, " ") {
			t.Fatalf("line %d has trailing spaces: %q", i+1, l)
		}
		switch {
		case l == "":
			head = ""
		case head == "":
			head = l
		default:
			for _, h := range regexp.MustCompile(`\S+( \S+)*`).FindAllStringIndex(head, -1) {
				if h[0] > 0 && (l[h[0]-1] != ' ' || l[h[0]] == ' ') {
					t.Fatalf("line %d: a column does not start under its heading at %d:\n%s\n%s", i+1, h[0], head, l)
				}
			}
		}
	}
}

func ctlConfig(adminAddr, addr string, backends ...string) string {
	list := ""
	for _, b := range backends {
		list += fmt.Sprintf("      - address: %s\n", b)
	}
	return fmt.Sprintf(`log: {level: info, format: json}
admin: {listen: %s}
listeners:
  - name: edge
    listen: %s
    routes:
      - name: secure
        match: {sni: [app.test]}
        tls: {mode: terminate, cert: self_signed}
        pool: p
      - name: rest
        pool: p
pools:
  p:
    policy: round_robin
    backends:
%s`, adminAddr, addr, list)
}

// status, drain, enable, certs and reload, each against a running l4edge,
// their plain output checked line by line.
func TestCtlCommands(t *testing.T) {
	b1, b2 := testpeer.Echo(t).Addr(), testpeer.Echo(t).Addr()
	ports := testpeer.FreePorts(t, 3)
	adminAddr, addr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	path := filepath.Join(t.TempDir(), "l4edge.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(ctlConfig(adminAddr, addr, b1, b2))
	srv := startProc(t, filepath.Join(binDir, "l4edge"), "run", "-config", path)
	waitListening(t, addr, 10*time.Second)
	waitListening(t, adminAddr, 10*time.Second)
	echoRoundTrip(t, addr, []byte("hello"))
	echoRoundTrip(t, addr, []byte("hello"))
	srv.waitLog(5*time.Second, `"msg":"connection"`, `"close":"client_closed"`) // both are logged once finished
	for deadline := time.Now().Add(3 * time.Second); len(srv.accessLogs()) < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}

	backendRow := func(b, state string, total string) []string {
		return []string{"p", b, state, "0", total, "0", "5", "B", "5", "B", "-", "-"}
	}
	statusWant := func(s1, s2 string) [][]string {
		return [][]string{
			{"LISTENER", "ADDRESS", "OPEN", "ACCEPTED", "REFUSED"},
			{"edge", addr, "0", "3", "0"}, // waitListening's connection and two round trips
			{},
			{"LISTENER", "ROUTE", "POOL", "TLS", "SNI", "ALPN", "OPEN"},
			{"edge", "secure", "p", "terminate", "app.test", "*", "0"},
			{"edge", "rest", "p", "passthrough", "*", "*", "0"},
			{},
			{"POOL", "BACKEND", "STATE", "ACTIVE", "TOTAL", "FAILURES", "TO", "BACKEND", "TO", "CLIENT", "LAST", "CHECK", "LAST", "ERROR"},
			backendRow(b1, s1, "1"),
			backendRow(b2, s2, "1"),
		}
	}
	out, errOut, code := cli(t, "status", "-admin", adminAddr)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	wantLines(t, out, statusWant("healthy", "healthy"))
	// Without -admin: the admin.listen of -config.
	if out2, errOut, _ := cli(t, "status", "-config", path); out2 != out {
		t.Fatalf("status -config %s:\n%s%s\nwant\n%s", path, out2, errOut, out)
	}
	out, _, _ = cli(t, "status", "-admin", adminAddr, "-json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["pools"] == nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}

	out, errOut, code = cli(t, "drain", "-admin", adminAddr, "p", b1)
	if code != 0 {
		t.Fatalf("drain: exit %d: %s", code, errOut)
	}
	wantLines(t, out, [][]string{{"pool", "p", "backend", b1 + ":", "draining", "(0", "active", "connections)"}})
	out, _, _ = cli(t, "status", "-admin", adminAddr)
	wantLines(t, out, statusWant("draining", "healthy"))
	out, _, _ = cli(t, "enable", "-admin", adminAddr, "p", b1)
	wantLines(t, out, [][]string{{"pool", "p", "backend", b1 + ":", "healthy", "(0", "active", "connections)"}})
	_, errOut, code = cli(t, "drain", "-admin", adminAddr, "p", "127.0.0.1:1")
	if code != 1 || errOut != fmt.Sprintf("l4edge drain: admin API at %s answered POST /pools/p/backends/127.0.0.1:1/drain with 404 Not Found: pool \"p\" has no backend \"127.0.0.1:1\"\n", adminAddr) {
		t.Fatalf("drain of an unknown backend: exit %d: %q", code, errOut)
	}

	out, errOut, code = cli(t, "certs", "-admin", adminAddr)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	certLine := regexp.MustCompile(`^app\.test,localhost  (\S.*\S)  +(\d{4}-\d\d-\d\d \d\d:\d\d UTC)  +(\d+)$`)
	if code != 0 || len(lines) != 2 || !regexp.MustCompile(`^NAMES +ISSUER +NOT AFTER +DAYS LEFT$`).MatchString(lines[0]) || !certLine.MatchString(lines[1]) {
		t.Fatalf("certs: exit %d %s\n%s", code, errOut, out)
	}
	var certs []tlsterm.CertInfo
	out, _, _ = cli(t, "certs", "-admin", adminAddr, "-json")
	if err := json.Unmarshal([]byte(out), &certs); err != nil || len(certs) != 1 ||
		certLine.FindStringSubmatch(lines[1])[1] != certs[0].Issuer || certLine.FindStringSubmatch(lines[1])[2] != certs[0].NotAfter.UTC().Format("2006-01-02 15:04 UTC") {
		t.Fatalf("certs -json %v %s, table line %q", err, out, lines[1])
	}

	// A file with two problems: both printed with key path and line, nothing asked of the process.
	write(strings.Replace(strings.Replace(ctlConfig(adminAddr, addr, b1, b2), "pool: p\n      - name: rest", "pool: nope\n      - name: rest", 1),
		"policy: round_robin", "policy: fastest", 1))
	out, errOut, code = cli(t, "reload", "-config", path)
	wantErr := []string{
		"2 errors in " + path + ":",
		`  listeners[0].routes[0].pool: unknown pool "nope" (line 10)`,
		"  pools.p.policy:",
		"l4edge reload: not reloaded; the running configuration keeps serving",
	}
	got := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if code != 1 || out != "" || len(got) != 4 || got[0] != wantErr[0] || got[1] != wantErr[1] ||
		!strings.HasPrefix(got[2], wantErr[2]) || !strings.HasSuffix(got[2], "(line 15)") || got[3] != wantErr[3] {
		t.Fatalf("reload of a bad file: exit %d\nstdout %q\nstderr:\n%s", code, out, errOut)
	}
	if n := srv.countLog("reload"); n != 0 {
		t.Fatalf("a bad file reached the process: %d reload log lines", n)
	}
	b3 := testpeer.Echo(t).Addr()
	write(ctlConfig(adminAddr, addr, b1, b2, b3))
	out, errOut, code = cli(t, "reload", "-config", path)
	if code != 0 {
		t.Fatalf("reload: exit %d: %s", code, errOut)
	}
	wantLines(t, out, [][]string{{path + ":", "ok", "(1", "listeners,", "1", "pools);", "l4edge", "at", adminAddr, "reloaded"}})
	srv.waitLog(5*time.Second, "configuration reloaded")
	if out, _, _ = cli(t, "status", "-admin", adminAddr); !strings.Contains(out, b3) {
		t.Fatalf("the reloaded pool's new backend is not in status:\n%s", out)
	}
}

// The errors say what failed, where, and what to check.
func TestCtlErrors(t *testing.T) {
	dead := testpeer.FreeAddrs(t, 1)[0]
	_, errOut, code := cli(t, "status", "-admin", dead)
	if want := "l4edge status: cannot reach admin API at " + dead + ": connection refused; is l4edge running with admin.listen set?\n"; code != 1 || errOut != want {
		t.Fatalf("exit %d %q, want %q", code, errOut, want)
	}
	noAdmin := writeConfig(t, "listeners: [{name: e, listen: \"127.0.0.1:0\", routes: [{name: r, pool: p}]}]\npools: {p: {backends: [{address: \"127.0.0.1:1\"}]}}\n")
	if _, errOut, code := cli(t, "certs", "-config", noAdmin); code != 1 || !strings.Contains(errOut, noAdmin+" has no admin.listen") {
		t.Fatalf("no admin.listen: exit %d %q", code, errOut)
	}
	if _, errOut, code := cli(t, "drain", "p", "127.0.0.1:1", "-admin", dead); code != 2 || !strings.Contains(errOut, "flags come before the arguments") {
		t.Fatalf("flags after arguments: exit %d %q", code, errOut)
	}
}
