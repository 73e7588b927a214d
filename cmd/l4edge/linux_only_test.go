//go:build linux

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestOtherSystemsGetOneMessage builds the command for systems other than
// Linux and wants the build to stop with the one line of linux_only.go, not
// with undefined symbols deep inside the relay. A file added to this package
// without `//go:build linux` brings the relay back into those builds and
// fails this test.
func TestOtherSystemsGetOneMessage(t *testing.T) {
	for _, goos := range []string{"darwin", "freebsd", "windows"} {
		cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("GOOS=%s go build ./cmd/l4edge succeeded; it must refuse: l4edge runs on Linux only", goos)
			continue
		}
		var errs []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.HasPrefix(line, "#") {
				errs = append(errs, line)
			}
		}
		if len(errs) != 1 || !strings.Contains(errs[0], "l4edge_runs_on_linux_only_it_needs_epoll_splice_and_tcp_info") {
			t.Errorf("GOOS=%s go build ./cmd/l4edge: want the one linux_only.go message, got:\n%s\n"+
				"(does a file of cmd/l4edge lack its //go:build linux line?)", goos, out)
		}
	}
}
