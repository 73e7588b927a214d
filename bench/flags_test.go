//go:build linux

package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

// The baseline is measured only when a binary for it is given: by default
// with -baseline, never without one, and -only cannot ask for it alone.
func TestBaselineTarget(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil || slices.Contains(o.only, targetL4edgeBaseline) || !slices.Contains(o.only, targetL4edge) {
		t.Fatalf("no flags: targets %v, %v; want the defaults without %s", o.only, err, targetL4edgeBaseline)
	}
	o, err = parseFlags([]string{"-baseline", "/tmp/l4edge-before"}, io.Discard)
	if err != nil || !slices.Contains(o.only, targetL4edgeBaseline) || len(o.only) != len(allTargets) {
		t.Fatalf("-baseline: targets %v, %v; want every target", o.only, err)
	}
	_, err = parseFlags([]string{"-only", "l4edge," + targetL4edgeBaseline}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-baseline PATH") {
		t.Fatalf("-only %s without -baseline: %v; want an error naming -baseline", targetL4edgeBaseline, err)
	}
}
