//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// Target names, in table order.
const (
	targetDirect = "direct"
	targetL4edge = "l4edge"
	// targetL4edgeNoIdle is l4edge without idle_timeout.
	targetL4edgeNoIdle = "l4edge-noidle"
	// targetL4edgeBaseline is another l4edge build (-baseline) with
	// l4edge's configuration: the before of a before/after in one run.
	targetL4edgeBaseline = "l4edge-baseline"
	targetHAProxy        = "haproxy"
	targetNginx          = "nginx"
)

// allTargets is the table order of the targets.
var allTargets = []string{targetDirect, targetL4edge, targetL4edgeNoIdle, targetL4edgeBaseline, targetHAProxy, targetNginx}

// defaultTargets returns the targets measured unless -only says
// otherwise: all but the baseline, which needs -baseline's binary.
func defaultTargets() []string {
	return slices.DeleteFunc(slices.Clone(allTargets), func(t string) bool { return t == targetL4edgeBaseline })
}

// tools are the proxy binaries found or built.
type tools struct {
	L4edge, HAProxy, Nginx string
	// L4edgeBaseline is the -baseline binary; "" when none.
	L4edgeBaseline string
	// NginxModule is the stream module to load; "" when built in.
	NginxModule string
}

// liveTarget is a started target: where clients connect and, unless
// direct, the proxy process whose resources are measured.
type liveTarget struct {
	name  string
	addrs backendAddrs
	proc  *proc // nil for direct
}

// sample returns the proxy's resources; all zero for direct (no proxy).
func (lt *liveTarget) sample() (procStats, error) {
	if lt.proc == nil {
		return procStats{}, nil
	}
	if err := lt.proc.exitErr(); err != nil {
		return procStats{}, err
	}
	return sampleTree(lt.proc.pid())
}

// check reports an error if the proxy has died.
func (lt *liveTarget) check() error {
	if lt.proc == nil {
		return nil
	}
	return lt.proc.exitErr()
}

// stop stops the proxy (by its PID).
func (lt *liveTarget) stop() error {
	if lt.proc == nil {
		return nil
	}
	return lt.proc.stop(5 * time.Second)
}

// starter starts targets in fresh directories under dir.
type starter struct {
	dir     string
	tools   tools
	backend backendAddrs
	certs   certFiles
	seq     int
}

// start starts the named target and waits until its listeners accept.
func (s *starter) start(ctx context.Context, name string) (*liveTarget, error) {
	if name == targetDirect {
		return &liveTarget{name: name, addrs: s.backend}, nil
	}
	s.seq++
	dir := filepath.Join(s.dir, fmt.Sprintf("%s-%d", name, s.seq))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	listen, err := freeAddrs()
	if err != nil {
		return nil, err
	}
	c := proxyConf{Listen: listen, Backend: s.backend, Certs: s.certs, Dir: dir, NginxModule: s.tools.NginxModule, IdleTimeout: "1h"}
	var cmd *exec.Cmd
	switch name {
	case targetL4edge, targetL4edgeNoIdle, targetL4edgeBaseline:
		bin := s.tools.L4edge
		switch name {
		case targetL4edgeNoIdle:
			c.IdleTimeout = "0"
		case targetL4edgeBaseline:
			bin = s.tools.L4edgeBaseline
		}
		path := filepath.Join(dir, "l4edge.yaml")
		if err := writeConf(path, l4edgeConf, c); err != nil {
			return nil, err
		}
		cmd = exec.Command(bin, "run", "-config", path)
	case targetHAProxy:
		path := filepath.Join(dir, "haproxy.cfg")
		if err := writeConf(path, haproxyConf, c); err != nil {
			return nil, err
		}
		cmd = exec.Command(s.tools.HAProxy, "-db", "-f", path)
	case targetNginx:
		if os.Geteuid() == 0 {
			c.NginxUser = "user nobody nogroup;\n"
		}
		path := filepath.Join(dir, "nginx.conf")
		if err := writeConf(path, nginxConf, c); err != nil {
			return nil, err
		}
		cmd = exec.Command(s.tools.Nginx, "-p", dir, "-c", path, "-e", "stderr")
	default:
		return nil, fmt.Errorf("unknown target %q (want one of %v)", name, allTargets)
	}
	cmd.Dir = dir
	p := newProc(name, cmd)
	if err := p.start(); err != nil {
		return nil, err
	}
	lt := &liveTarget{name: name, addrs: listen, proc: p}
	if err := waitListening(ctx, p, listen, 15*time.Second); err != nil {
		_ = lt.stop()
		return nil, err
	}
	return lt, nil
}

// freeAddrs reserves distinct loopback ports (they are released just
// before the proxy binds them).
func freeAddrs() (backendAddrs, error) {
	a, err := reservePorts(len(backendAddrs{}.all()))
	if err != nil {
		return backendAddrs{}, err
	}
	return backendAddrs{Echo: a[0], Source: a[1], Sink: a[2], TLSEcho: a[3], TLSSource: a[4], TLSSink: a[5], WS: a[6], WSS: a[7], WSSPass: a[8], Iperf: a[9]}, nil
}

// reservePorts returns n distinct free loopback addresses; the ports are
// released on return, just before a child process binds them.
func reservePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a loopback port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// waitListening polls until every address accepts a TCP connection, the
// process exits, or limit passes.
// Not the iperf3 listener: a probe through it is a test that iperf3 -s
// (one test at a time) is still tearing down when the scenario's client
// arrives.
func waitListening(ctx context.Context, p *proc, a backendAddrs, limit time.Duration) error {
	probe := slices.DeleteFunc(a.all(), func(addr string) bool { return addr == a.Iperf })
	return waitAccepting(ctx, p, probe, limit)
}

// waitAccepting polls until every one of addrs accepts a TCP connection,
// the process exits, or limit passes (then it stops the process).
func waitAccepting(ctx context.Context, p *proc, addrs []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if err := p.exitErr(); err != nil {
			return err
		}
		var lastErr error
		for _, addr := range addrs {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err != nil {
				lastErr = err
				break
			}
			_ = c.Close()
		}
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			_ = p.stop(2 * time.Second)
			return fmt.Errorf("%s did not listen within %v: %v; its output: %s", p.name, limit, lastErr, p.tail.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}
