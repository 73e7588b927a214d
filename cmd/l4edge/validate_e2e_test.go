//go:build linux

package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validBase is a file both commands accept; each case below changes one
// line of it into something run refuses.
const validBase = `log: {level: info, format: json}
admin: {listen: "127.0.0.1:0"}
listeners:
  - name: edge
    listen: 127.0.0.1:0
    proxy_protocol_in: {trusted: [127.0.0.1/32]}
    routes:
      - name: tls
        match: {sni: [a.example.com]}
        tls: {mode: terminate, cert: self_signed}
        pool: p
pools:
  p:
    policy: round_robin
    backends: [{address: 127.0.0.1:1}]
    health: {check: tcp}
`

// Every refusal of run that depends on the file alone is one of validate:
// each case, a file run refuses, is reported by validate with its key path
// and line and exit 1, and run refuses it with the same words.
func TestValidateRefusesWhatRunRefuses(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"admin beyond loopback", `admin: {listen: "127.0.0.1:0"}`, `admin: {listen: "0.0.0.0:0"}`, "admin.listen: \"0.0.0.0:0\" is not a loopback address; set admin.allow_remote: true"},
		{"log level", `level: info`, `level: loud`, "log.level"},
		{"unknown pool", `        pool: p`, `        pool: q`, `listeners[0].routes[0].pool: unknown pool "q"`},
		{"policy", `policy: round_robin`, `policy: fastest`, "pools.p.policy"},
		{"trusted peers", `trusted: [127.0.0.1/32]`, `trusted: [localhost]`, "listeners[0].proxy_protocol_in.trusted[0]"},
		{"acme without tls.acme", `cert: self_signed`, `cert: acme`, "listeners[0].routes[0].tls.cert: cert: acme needs tls.acme"},
		{"cert on passthrough", `mode: terminate`, `mode: passthrough`, "listeners[0].routes[0].tls"},
		{"health check", `check: tcp`, `check: icmp`, "pools.p.health.check"},
	}
	bin := filepath.Join(binDir, "l4edge")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validBase, tc.from) {
				t.Fatalf("base file lacks %q", tc.from)
			}
			file := writeConfig(t, strings.Replace(validBase, tc.from, tc.to, 1))
			for _, verb := range []string{"validate", "run"} {
				cmd := exec.Command(bin, verb, "-config", file)
				timer := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
				out, _ := cmd.CombinedOutput()
				timer.Stop()
				if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "(line ") {
					t.Fatalf("l4edge %s: exit %d, want 1 with %q and its line:\n%s", verb, code, tc.want, out)
				}
			}
		})
	}
	good := writeConfig(t, validBase)
	if out, err := exec.Command(bin, "validate", "-config", good).CombinedOutput(); err != nil {
		t.Fatalf("validate of the base file: %v\n%s", err, out)
	}
}
