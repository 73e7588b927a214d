//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// meta describes where and with what a run happened.
type meta struct {
	date           time.Time
	mode           string
	p              params
	elapsed        time.Duration
	nproc          int
	memory, kernel string
	cpu            string
	noFile         uint64
	goVersion      string
	l4edge         string
	baseline       string // the -baseline binary's path and version; "" without one
	haproxy, nginx string
	missing        []string
}

// collectMeta reads the machine description from /proc and the versions
// from the tools themselves.
func collectMeta(t tools, l4edgeCommit string) meta {
	if t.HAProxy == "" {
		t.HAProxy = findBinary("haproxy")
	}
	if t.Nginx == "" {
		t.Nginx = findBinary("nginx")
	}
	m := meta{
		date:      time.Now(),
		nproc:     runtime.NumCPU(),
		memory:    memTotal(),
		kernel:    strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		cpu:       cpuModel(),
		noFile:    noFileLimit(),
		goVersion: firstLine("go", "version"),
		haproxy:   firstLine(t.HAProxy, "-v"),
		nginx:     firstLine(t.Nginx, "-v"),
	}
	if t.L4edge != "" {
		m.l4edge = l4edgeVersion(t.L4edge)
		if !strings.Contains(m.l4edge, l4edgeCommit) {
			m.l4edge += fmt.Sprintf(" (working tree: %s)", l4edgeCommit)
		}
	}
	if t.L4edgeBaseline != "" {
		m.baseline = fmt.Sprintf("l4edge-baseline: `%s`, %s", t.L4edgeBaseline, l4edgeVersion(t.L4edgeBaseline))
	}
	return m
}

// l4edgeVersion is what an l4edge binary's version command prints, its
// lines joined on one.
func l4edgeVersion(bin string) string {
	return strings.Join(strings.Split(strings.TrimSpace(runOut(bin, "version")), "\n"), ", ")
}

// readFile returns a file's contents, "" when unreadable.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// runOut returns a command's combined output, "" when it fails to run.
func runOut(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return string(out)
}

// memTotal returns MemTotal from /proc/meminfo in GiB.
func memTotal() string {
	sc := bufio.NewScanner(strings.NewReader(readFile("/proc/meminfo")))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return "unknown"
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	sc := bufio.NewScanner(strings.NewReader(readFile("/proc/cpuinfo")))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// document renders the whole RESULTS.md.
func document(m meta, r *results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# l4edge benchmark results\n\n")
	fmt.Fprintf(&b, "Written by the harness in `bench/` (`make bench`) on %s, %s mode, %d run(s) per cell, medians shown; the run took %s.\n\n",
		m.date.UTC().Format("2006-01-02 15:04 MST"), m.mode, m.p.runs, m.elapsed.Round(time.Second))
	b.WriteString("## Machine and versions\n\n")
	fmt.Fprintf(&b, "- CPU: %d × %s (nproc %d); memory %s; kernel %s; descriptor limit %d\n", m.nproc, m.cpu, m.nproc, m.memory, m.kernel, m.noFile)
	fmt.Fprintf(&b, "- %s\n", orUnknown(m.goVersion, "go"))
	fmt.Fprintf(&b, "- %s\n", orUnknown(m.l4edge, "l4edge"))
	if m.baseline != "" {
		fmt.Fprintf(&b, "- %s\n", m.baseline)
	}
	fmt.Fprintf(&b, "- %s\n", orUnknown(m.haproxy, "haproxy"))
	fmt.Fprintf(&b, "- %s\n", orUnknown(m.nginx, "nginx"))
	for _, miss := range m.missing {
		fmt.Fprintf(&b, "- NOT MEASURED: %s\n", miss)
	}
	b.WriteString("\n## Results\n\n")
	b.WriteString(r.table())
	b.WriteString("\n↑: higher is better, ↓: lower is better. A ratio is the two medians divided. " +
		"Proxy resource rows are zero for direct, which has no proxy.\n\n")
	b.WriteString("## Method\n\n")
	for _, line := range methodNotes(m) {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	if notes := r.notes(); len(notes) > 0 {
		b.WriteString("\n## Notes from this run\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// orUnknown returns s, or "NAME: not found" when s is empty.
func orUnknown(s, name string) string {
	if s != "" {
		return s
	}
	return strings.TrimSpace(name + " version unknown (not found)")
}

// methodNotes explains how the figures were taken.
func methodNotes(m meta) []string {
	p := m.p
	notes := []string{
		"Everything runs on loopback on this one machine: the load generator (this harness), " +
			"the backend (the harness re-executed as `backend`, its own process and descriptor budget) and the proxy share the cores; nothing is pinned.",
		"Targets: direct (client to backend, the physical reference; for TLS the backend terminates with Go's crypto/tls), " +
			"l4edge (`cmd/l4edge` built at run time, access log off), HAProxy `mode tcp` with `nbthread 2`, nginx `stream` with 2 workers. " +
			"No proxy checks health or logs connections; all default buffer sizes and splicing behaviour are kept; the configurations are in `bench/configs.go`.",
		fmt.Sprintf("Each cell is measured %d time(s) on a freshly started proxy (the memory scenarios idle, idle-large and tls-idle %d times: "+
			"a Go proxy's RSS growth depends on whether a collection ran while the connections opened); "+
			"targets alternate (the order reverses every run) and the median is shown.", p.runs, runsOf("idle", p)),
		fmt.Sprintf("Before the first measurement the harness runs the connection-rate load on direct for %s, unrecorded: "+
			"a fresh harness and backend show connection-rate p99.9 up to 3x their later figures for about their first 20 s, "+
			"which would fall on whichever target is measured first.", p.warm),
		"Timeouts as operators set them: l4edge pools `idle_timeout: 1h`, HAProxy `timeout client/server 1h`, nginx `proxy_timeout 1h`; " +
			"l4edge-noidle is l4edge without idle_timeout, and the l4edge/l4edge-noidle column is the cost of the timeout.",
		"Download: the backend writes zeros as fast as the client reads; Gbit/s counts bytes the clients received. " +
			"Upload: the clients write 128 KiB chunks to a backend that reads and discards; Gbit/s counts bytes the kernel took from the clients. " +
			"Proxy CPU is utime+stime from /proc/PID/stat of the proxy's processes (nginx master and workers), before and after the timed window.",
		"iperf3: Debian's iperf3 -c (-R for download) through each target to an iperf3 -s the backend runs; Gbit/s is iperf3's sum_received.",
		fmt.Sprintf("wss: %d WebSockets (coder/websocket, in the harness) over TLS terminated by the proxy (wss-passthrough: passed through to the backend's own TLS), "+
			"each sending 64 bytes and reading the echo once a second, spread evenly, for %s; CPU per message is the proxy's over that window, RSS per connection as for idle. "+
			"The descriptor limit here is 20,000 per process: %d WebSockets hold %d descriptors in a proxy (client and backend side), which every proxy can hold; "+
			"HAProxy's maxconn and nginx's worker_connections are set above it.", p.wssConns, p.wssTime, p.wssConns, 2*p.wssConns),
		fmt.Sprintf("Reconnect storm: %d wss WebSockets are dropped at once when the backend's WebSocket service restarts (it refuses connections for %s); "+
			"each client reconnects at once, then after 50 ms doubling to 1 s (with jitter) per failed attempt, and echoes once. "+
			"The figure is the time from the restart to the last echo; peak RSS is sampled every 100 ms.", p.stormConns, wsDowntime),
		"Connection rate: connect, write 64 bytes, read them back, close; latency is the whole cycle.",
		"Ping-pong: 64 bytes written and read back on already open connections; latency per round trip.",
		"Idle: connections opened 32 at a time, each proven with one echo, left idle for the settle time, then the proxy's VmRSS and /proc/PID/fd count are read; " +
			"per-connection figures are (that − the value before opening) ÷ connections held; held counts those that answer a second echo after the measurement.",
		"TLS: ECDSA P-256 certificate, the client forces TLS 1.3 with X25519 (the key exchange all three proxies offer), no session resumption " +
			"(no session cache, tickets disabled) and verifies the certificate; each handshake is followed by one 64-byte echo so the proxy reaches the backend.",
		"Latency percentiles come from a log-linear histogram (±1.6%).",
	}
	if m.baseline != "" {
		notes = append(notes, "l4edge-baseline is another l4edge build (`-baseline`), started with l4edge's configuration and alternated with the other targets in the same run; "+
			"the l4edge/l4edge-baseline column is the change between the two builds.")
	}
	return notes
}
