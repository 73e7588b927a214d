//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// raiseNoFile raises RLIMIT_NOFILE to its hard limit. Setting it
// explicitly (rather than relying on the Go runtime's own raise) makes
// child processes inherit the raised limit too.
func raiseNoFile() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("setrlimit NOFILE to %d: %w", lim.Max, err)
	}
	return nil
}

// noFileLimit returns the soft descriptor limit.
func noFileLimit() uint64 {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

// findBinary looks name up in PATH, then in the sbin directories that a
// non-root PATH often lacks.
func findBinary(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// nginxStreamModule returns the dynamic stream module to load ("" when
// nginx has it built in) and whether stream is available at all.
func nginxStreamModule(nginx string) (string, bool) {
	for _, p := range []string{
		"/usr/lib/nginx/modules/ngx_stream_module.so",
		"/usr/share/nginx/modules/ngx_stream_module.so",
		"/usr/lib64/nginx/modules/ngx_stream_module.so",
	} {
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	out, _ := exec.Command(nginx, "-V").CombinedOutput()
	for _, f := range strings.Fields(string(out)) {
		if f == "--with-stream" {
			return "", true
		}
	}
	return "", false
}

// findProxies locates haproxy and nginx (with stream), installing the
// missing Debian packages with apt-get first when install is set and the
// harness runs as root.
func findProxies(ctx context.Context, log *zap.Logger, want map[string]bool, install bool) tools {
	var t tools
	look := func() []string {
		var missing []string
		if want[targetHAProxy] {
			if t.HAProxy = findBinary("haproxy"); t.HAProxy == "" {
				missing = append(missing, "haproxy")
			}
		}
		if want[targetNginx] {
			t.Nginx = findBinary("nginx")
			ok := false
			if t.Nginx != "" {
				t.NginxModule, ok = nginxStreamModule(t.Nginx)
			}
			if !ok {
				missing = append(missing, "nginx", "libnginx-mod-stream")
				t.Nginx = ""
			}
		}
		return missing
	}
	missing := look()
	if len(missing) == 0 {
		return t
	}
	if !install || os.Geteuid() != 0 {
		log.Warn("proxies missing and not installing them (needs root and -install)", zap.Strings("packages", missing))
		return t
	}
	log.Info("installing missing packages with apt-get", zap.Strings("packages", missing))
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"update", "-qq"},
		append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.CommandContext(ictx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Warn("apt-get failed", zap.Strings("args", args), zap.Error(err), zap.ByteString("output", lastBytes(out, 2000)))
			break
		}
	}
	if missing = look(); len(missing) > 0 {
		log.Warn("still missing after apt-get", zap.Strings("packages", missing))
	}
	return t
}

// lastBytes returns at most n trailing bytes of b.
func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// buildL4edge builds ./cmd/l4edge of the module at root into dir and
// returns the binary's path and the commit it was built from.
func buildL4edge(ctx context.Context, root, dir string) (string, string, error) {
	commit := gitDescribe(root)
	bin := filepath.Join(dir, "l4edge")
	err := goBuild(ctx, root, "./cmd/l4edge", bin, "-ldflags", "-X main.version=bench -X main.commit="+commit)
	return bin, commit, err
}

// goBuild runs go build of pkg (relative to the module at root) into out,
// with extra flags before the package.
func goBuild(ctx context.Context, root, pkg, out string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %v\n%s", pkg, root, err, b)
	}
	return nil
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (run from inside the l4edge module)", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module: run the harness from the l4edge repository")
	}
	return filepath.Dir(gomod), nil
}

// gitDescribe names the working tree's commit, "-dirty" when modified.
func gitDescribe(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty", "--abbrev=12").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// firstLine runs a command and returns the first line of its combined
// output, or "" when it fails to run.
func firstLine(name string, args ...string) string {
	if name == "" {
		return ""
	}
	out, _ := exec.Command(name, args...).CombinedOutput()
	line, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\n"))
	return strings.TrimSpace(string(line))
}
