//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// iperf3 (Debian's) as a real client: a control connection and 1 or 8 data
// streams through the proxy to an `iperf3 -s` that the backend process
// runs, upload (the client sends) and -R download (the server sends).

// startIperfServer runs `iperf3 -s` on a free loopback port for as long as
// the backend process lives. Without iperf3 it serves a listener that
// closes every connection, so proxies have somewhere to point, and the
// iperf3 scenarios fail saying why.
func startIperfServer() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("reserve a port for iperf3: %w", err)
	}
	addr = ln.Addr().String()
	bin, lookErr := exec.LookPath("iperf3")
	if lookErr != nil {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		}()
		return addr, func() { _ = ln.Close() }, nil
	}
	_ = ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-s", "-B", "127.0.0.1", "-p", port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the backend
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start iperf3 -s: %w", err)
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("iperf3 -s did not listen on %s within 5s", addr)
		}
	}
}

// iperfRunner runs iperf3 -c through the target for env.p.bulk with the
// given streams, downloading with -R.
func iperfRunner(streams int, download bool) func(context.Context, *scenarioEnv, *liveTarget) (outcome, error) {
	return func(ctx context.Context, env *scenarioEnv, lt *liveTarget) (outcome, error) {
		bin, err := exec.LookPath("iperf3")
		if err != nil {
			return outcome{}, errors.New("iperf3 not installed (make test-deps installs it)")
		}
		host, port, _ := net.SplitHostPort(lt.addrs.Iperf)
		secs := strconv.Itoa(max(int(env.p.bulk/time.Second), 1))
		args := []string{"-c", host, "-p", port, "-t", secs, "-P", strconv.Itoa(streams), "-J", "--connect-timeout", "3000"}
		if download {
			args = append(args, "-R")
		}
		s0, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		out, retries, runErr := runIperf(ctx, bin, args, env.p.bulk+30*time.Second)
		s1, err := lt.sample()
		if err != nil {
			return outcome{}, err
		}
		var rep struct {
			End struct {
				SumReceived struct {
					Bytes         float64 `json:"bytes"`
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(out, &rep); err != nil || rep.Error != "" || runErr != nil {
			return outcome{}, fmt.Errorf("iperf3 %v: %v %s %s", args, runErr, rep.Error, bytes.TrimSpace(out[:min(len(out), 300)]))
		}
		b := rep.End.SumReceived.Bytes
		if b == 0 {
			return outcome{}, errors.New("iperf3 received no bytes")
		}
		return outcome{values: map[string]float64{
			"gbps":       rep.End.SumReceived.BitsPerSecond / 1e9,
			"cpu_per_gb": (s1.CPU - s0.CPU) / (b / 1e9),
		}, failed: uint64(retries)}, nil
	}
}

// runIperf runs iperf3 -c within limit. iperf3 -s serves one test at a
// time and takes a moment to tear the last one down; a client that finds
// it busy (or reset before the test started) tries again after 500 ms, at
// most twice, and the retries are counted as failed operations.
func runIperf(ctx context.Context, bin string, args []string, limit time.Duration) (out []byte, retries int, err error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, limit)
		out, err = exec.CommandContext(cctx, bin, args...).Output()
		cancel()
		busy := bytes.Contains(out, []byte("server is busy")) || bytes.Contains(out, []byte("unable to receive control message"))
		if !busy || retries == 2 {
			return out, retries, err
		}
		retries++
		pause(ctx, 500*time.Millisecond)
	}
}
