//go:build linux

package main

import (
	"os"
	"runtime"

	"go.uber.org/zap"
)

// sizeEventLoops runs one event loop per CPU Go would use and one P more for
// Go code (why: docs/design.md, "Event loops and Go's scheduler").
func sizeEventLoops(log *zap.Logger) int {
	loops := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(loops + 1)
	} else {
		loops = max(loops-1, 1)
	}
	log.Debug("event loops", zap.Int("loops", loops), zap.Int("gomaxprocs", runtime.GOMAXPROCS(0)))
	return loops
}
