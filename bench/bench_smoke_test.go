//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchSmoke builds the harness (without -race: the load generators
// would crawl), runs it in smoke mode against every installed target and
// checks that the table it writes has a number in every cell.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the benchmark smoke run starts real proxies")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bench")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./bench: %v\n%s", err, out)
	}

	// The baseline is this tree built once more: its column and ratio
	// must appear.
	baseline := filepath.Join(dir, "l4edge-baseline")
	if out, err := exec.Command("go", "build", "-o", baseline, "../cmd/l4edge").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/l4edge: %v\n%s", err, out)
	}
	targets := []string{targetDirect, targetL4edge, targetL4edgeNoIdle, targetL4edgeBaseline}
	var missing []string
	if findBinary("haproxy") != "" {
		targets = append(targets, targetHAProxy)
	} else {
		missing = append(missing, "haproxy")
	}
	if nginx := findBinary("nginx"); nginx == "" {
		missing = append(missing, "nginx")
	} else if _, ok := nginxStreamModule(nginx); !ok {
		missing = append(missing, "libnginx-mod-stream")
	} else {
		targets = append(targets, targetNginx)
	}

	outFile := filepath.Join(dir, "RESULTS.md")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-smoke", "-install=false", "-out", outFile, "-only", strings.Join(targets, ","), "-baseline", baseline)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("harness -smoke failed after %v: %v\nstdout:\n%s\nstderr (end):\n%s", time.Since(start), err, stdout.String(), lastBytes(stderr.Bytes(), 8000))
	}
	t.Logf("smoke run took %v", time.Since(start).Round(time.Millisecond))
	doc, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatalf("harness wrote no results file: %v", err)
	}
	for _, want := range []string{"## Machine and versions", "nproc", "go version go1.", "l4edge bench, commit ", "## Results"} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("results file lacks %q:\n%s", want, doc)
		}
	}

	header, rows := parseMarkdownTable(t, string(doc))
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	wantRows := 0
	for _, s := range scenarios(smokeParams()) {
		wantRows += len(s.metrics)
	}
	if len(rows) != wantRows {
		t.Errorf("table has %d rows, want %d (one per scenario metric)", len(rows), wantRows)
	}
	for _, target := range targets {
		i, ok := col[target]
		if !ok {
			t.Errorf("table has no %s column; header %v", target, header)
			continue
		}
		for _, row := range rows {
			v, err := strconv.ParseFloat(row[i], 64)
			if err != nil {
				t.Errorf("%s / %s on %s: cell %q is not a number", row[0], row[1], target, row[i])
				continue
			}
			if strings.HasSuffix(row[1], "↑") && v <= 0 {
				t.Errorf("%s / %s on %s: %v, want > 0", row[0], row[1], target, v)
			}
		}
	}
	for _, ratio := range []string{"l4edge/direct", "l4edge/l4edge-baseline"} {
		if i, ok := col[ratio]; !ok {
			t.Errorf("table has no %s ratio column; header %v", ratio, header)
		} else if _, err := strconv.ParseFloat(rows[0][i], 64); err != nil {
			t.Errorf("%s ratio of the first row is %q, want a number", ratio, rows[0][i])
		}
	}
	if !bytes.Contains(doc, []byte("l4edge-baseline: `"+baseline+"`")) {
		t.Errorf("results file does not name the baseline binary %s", baseline)
	}
	if len(missing) > 0 {
		t.Skipf("\n*** HAProxy/nginx cells NOT CHECKED: missing %v. `make test` installs them (as root). ***", missing)
	}
}

// parseMarkdownTable returns the header and body rows of the first
// Markdown table in doc, cells trimmed.
func parseMarkdownTable(t *testing.T, doc string) ([]string, [][]string) {
	t.Helper()
	var table [][]string
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if len(table) > 0 {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		table = append(table, cells)
	}
	if len(table) < 3 {
		t.Fatalf("no Markdown table with rows in the results:\n%s", doc)
	}
	for i, row := range table[2:] {
		if len(row) != len(table[0]) {
			t.Fatalf("table row %d has %d cells, header %d: %v", i+1, len(row), len(table[0]), row)
		}
	}
	return table[0], table[2:]
}
