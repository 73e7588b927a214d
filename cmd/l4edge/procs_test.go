//go:build linux

package main

import (
	"runtime"
	"testing"

	"go.uber.org/zap"
)

// One loop per P Go would use, and one P more for goroutines; an explicit
// GOMAXPROCS is left alone and the loops are one fewer, at least one.
func TestSizeEventLoops(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	t.Setenv("GOMAXPROCS", "")
	if loops := sizeEventLoops(zap.NewNop()); loops != before || runtime.GOMAXPROCS(0) != before+1 {
		t.Fatalf("loops %d, GOMAXPROCS %d; want %d and %d", loops, runtime.GOMAXPROCS(0), before, before+1)
	}
	runtime.GOMAXPROCS(before)

	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	if loops := sizeEventLoops(zap.NewNop()); loops != 2 || runtime.GOMAXPROCS(0) != 3 {
		t.Fatalf("with GOMAXPROCS=3 set: loops %d, GOMAXPROCS %d; want 2 and 3", loops, runtime.GOMAXPROCS(0))
	}

	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	if loops := sizeEventLoops(zap.NewNop()); loops != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("with GOMAXPROCS=1 set: loops %d, GOMAXPROCS %d; want 1 and 1", loops, runtime.GOMAXPROCS(0))
	}
}
