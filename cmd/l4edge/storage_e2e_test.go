//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/tlsterm/redisstore/redistest"
)

// redisConfig is a terminating route for names with ACME certificates
// from p, kept in the Redis at redisAddr (none when empty); redisExtra adds
// keys under tls.storage.redis (indented six spaces).
func redisConfig(p *pebble, listen, admin, redisAddr, redisExtra string, names []string, onDemand string) string {
	adminLine, odLine, match := "", "", ""
	redisLines := redisExtra
	if redisAddr != "" {
		redisLines = "      address: " + redisAddr + "\n" + redisExtra
	}
	if admin != "" {
		adminLine = "admin: {listen: " + admin + "}"
	}
	if onDemand != "" {
		odLine = "    on_demand: {allow: [" + onDemand + "]}"
	}
	if len(names) > 0 {
		sni := slices.Clone(names)
		if onDemand != "" {
			sni = append(sni, onDemand)
		}
		match = "        match: {sni: [" + strings.Join(sni, ", ") + "]}"
	}
	return fmt.Sprintf(`
log: {level: info, format: json}
%s
tls:
  acme:
    email: ops@example.test
    ca: %s
    ca_roots: [%s]
    challenges: [tls-alpn-01]
%s
  storage:
    redis:
%s
listeners:
  - name: edge
    listen: %s
    routes:
      - name: tls
%s
        tls: {mode: terminate, cert: acme}
        pool: echo
pools:
  echo:
    backends: [{address: "127.0.0.1:1"}]
`, adminLine, p.DirectoryURL, p.RootsFile, odLine, redisLines, listen, match)
}

// runFails runs l4edge on cfg, expects exit 1 within the time given, and
// returns its standard error.
func runFails(t *testing.T, cfg string, within time.Duration) string {
	t.Helper()
	p := startProc(t, filepath.Join(binDir, "l4edge"), "run", "-config", writeConfig(t, cfg))
	start := time.Now()
	if code := p.wait(within); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, strings.Join(p.lines(), "\n"))
	}
	t.Logf("exited after %s", time.Since(start).Round(time.Millisecond))
	return strings.Join(p.lines(), "\n")
}

func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "redis.pass")
	if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Bad Redis settings stop run at start with an error naming Redis, the
// address and the cause, never the password.
func TestRedisBadStart(t *testing.T) {
	ports := testpeer.FreePorts(t, 2)
	p := startPebble(t, ports[0], ports[1])
	addr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	srv := redistest.Start(t, redistest.Options{Password: "the-right-one"})
	plain := redistest.Start(t, redistest.Options{})

	t.Run("wrong password", func(t *testing.T) {
		secret := "not-the-right-one-7731"
		out := runFails(t, redisConfig(p, addr, "", srv.Addr, "      password_file: "+writeSecret(t, secret), []string{"a.test"}, ""), 10*time.Second)
		if !containsAll(out, "start failed", "redis "+srv.Addr, "WRONGPASS", "authentication refused") || strings.Contains(out, secret) {
			t.Fatalf("unclear error or password shown:\n%s", out)
		}
	})
	t.Run("right password", func(t *testing.T) {
		l := startL4edge(t, redisConfig(p, addr, "", srv.Addr, "      password_file: "+writeSecret(t, "the-right-one"), []string{"a.test"}, ""), addr)
		l.waitLog(5*time.Second, "storage connected", srv.Addr)
		waitCertificate(t, p, addr, "a.test", 30*time.Second)
		l.signal(15)
		l.wait(15 * time.Second)
	})
	t.Run("unreachable", func(t *testing.T) {
		gone := testpeer.Refusing(t, 1)[0]
		out := runFails(t, redisConfig(p, addr, "", gone, "", []string{"a.test"}, ""), 20*time.Second)
		if !containsAll(out, "redis "+gone, "connection refused") {
			t.Fatalf("unclear error:\n%s", out)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		hole := testpeer.Blackhole(t)
		out := runFails(t, redisConfig(p, addr, "", hole, "      timeout: 500ms", []string{"a.test"}, ""), 20*time.Second)
		if !containsAll(out, "redis "+hole, "timeout", "Redis did not answer") {
			t.Fatalf("unclear error:\n%s", out)
		}
	})
	t.Run("tls to plain redis", func(t *testing.T) {
		out := runFails(t, redisConfig(p, addr, "", plain.Addr, "      tls: {enabled: true}", []string{"a.test"}, ""), 20*time.Second)
		if !containsAll(out, "redis "+plain.Addr, "TLS handshake failed", "does not seem to speak TLS") {
			t.Fatalf("unclear error:\n%s", out)
		}
	})
	tlsSrv := redistest.Start(t, redistest.Options{TLS: true})
	t.Run("tls", func(t *testing.T) {
		extra := "      tls: {enabled: true, ca_file: " + tlsSrv.CAFile + ", server_name: redis.test}"
		l := startL4edge(t, redisConfig(p, addr, "", tlsSrv.Addr, extra, []string{"tls.test"}, ""), addr)
		l.waitLog(5*time.Second, "storage connected", tlsSrv.Addr)
		waitCertificate(t, p, addr, "tls.test", 30*time.Second)
		l.signal(15)
		l.wait(15 * time.Second)
	})
	t.Run("tls with an unknown CA", func(t *testing.T) {
		out := runFails(t, redisConfig(p, addr, "", tlsSrv.Addr, "      tls: {enabled: true}", []string{"a.test"}, ""), 5*time.Second)
		if !containsAll(out, "redis "+tlsSrv.Addr, "server certificate not trusted", "ca_file") {
			t.Fatalf("unclear error:\n%s", out)
		}
	})
	t.Run("inline password", func(t *testing.T) {
		var stdout, stderr strings.Builder
		path := writeConfig(t, redisConfig(p, addr, "", plain.Addr, "      password: hunter2", []string{"a.test"}, ""))
		if code := run([]string{"validate", "-config", path}, &stdout, &stderr); code != 1 {
			t.Fatalf("validate exit %d", code)
		}
		if !strings.Contains(stderr.String(), "tls.storage.redis.password: a secret does not belong in the configuration") ||
			strings.Contains(stderr.String(), "hunter2") {
			t.Fatalf("validate: %s", stderr.String())
		}
	})
}

// A certificate key under the prefix holding garbage (a wrong type, or
// bytes that are no PEM) makes l4edge obtain the certificate again; it
// does not crash.
func TestRedisGarbageKey(t *testing.T) {
	ports := testpeer.FreePorts(t, 2)
	p := startPebble(t, ports[0], ports[1])
	addr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	srv := redistest.Start(t, redistest.Options{})
	cfg := redisConfig(p, addr, "", srv.Addr, "", []string{"g1.test", "g2.test"}, "")
	first := startL4edge(t, cfg, addr)
	waitCertificate(t, p, addr, "g1.test", 30*time.Second)
	waitCertificate(t, p, addr, "g2.test", 30*time.Second)
	first.signal(15)
	first.wait(15 * time.Second)

	if got := srv.Command("HSET", "l4edge:v:"+certKey(t, p, "g1.test"), "data", "garbage"); got != ":0" {
		t.Fatalf("HSET: %s", got)
	}
	srv.Command("DEL", "l4edge:v:"+certKey(t, p, "g2.test"))
	if got := srv.Command("SET", "l4edge:v:"+certKey(t, p, "g2.test"), "garbage"); got != "+OK" {
		t.Fatalf("SET: %s", got)
	}
	second := startL4edge(t, cfg, addr)
	waitCertificate(t, p, addr, "g1.test", 30*time.Second)
	waitCertificate(t, p, addr, "g2.test", 30*time.Second)
	if got := p.ordered(); len(got) != 4 {
		t.Fatalf("orders %v: want each name ordered again", got)
	}
	second.signal(15)
	if code := second.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
