//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// systemd accepts examples/systemd/l4edge.service as it is (its binary
// path pointed at the one built for the tests), without a single warning,
// and the unit keeps what l4edge's notifications rely on.
func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("../../examples/systemd/l4edge.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify\n", "ExecReload=/bin/kill -HUP $MAINPID\n", "NotifyAccess=main\n",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "NoNewPrivileges=yes\n", "ProtectSystem=strict\n",
		"StateDirectory=l4edge\n", "LimitNOFILE=", "DynamicUser=yes\n", "notify-reload", "WatchdogSec="} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		msg := "SKIP: systemd-analyze not installed (Debian package systemd; make test installs it as root): the unit is not verified"
		os.Stderr.WriteString(msg + "\n")
		t.Skip(msg)
	}
	path := filepath.Join(t.TempDir(), "l4edge.service")
	local := strings.ReplaceAll(string(unit), "/usr/local/bin/l4edge", filepath.Join(binDir, "l4edge"))
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on unknown keys and bad values too; it only warns.
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}
