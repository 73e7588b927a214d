package testpeer

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// LeakCheck records the test process's goroutines and open descriptors and
// returns a check that fails the test unless both are back to at most
// those numbers within 5 s. Call the check where everything the test
// started after LeakCheck should be gone.
func LeakCheck(t testing.TB) func() {
	t.Helper()
	g0, f0 := runtime.NumGoroutine(), OpenFDs(t)
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			// Go's own splice pipes (io.Copy between sockets in test
			// backends) sit in a sync.Pool until a GC closes them.
			runtime.GC()
			g, f := runtime.NumGoroutine(), OpenFDs(t)
			if g <= g0 && f <= f0 {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Fatalf("leak: goroutines %d -> %d, fds %d -> %d\n%s", g0, g, f0, f, buf[:n])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// OpenFDs counts the test process's open descriptors.
func OpenFDs(t testing.TB) int {
	t.Helper()
	return ProcFDs(t, os.Getpid())
}

// ProcFDs counts the open descriptors of process pid.
func ProcFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("process %d is gone: %v", pid, err)
	}
	return len(ents)
}

// ProcRSS returns the resident set size of process pid, in bytes.
func ProcRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("process %d is gone: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
