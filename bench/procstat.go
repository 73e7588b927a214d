//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStats are resource figures summed over a proxy's processes.
type procStats struct {
	// CPU is user plus system time in seconds.
	CPU float64
	// RSS is resident memory in bytes (VmRSS summed).
	RSS float64
	// FDs is the number of open file descriptors.
	FDs float64
}

// procID names a process by PID and start time, so that a reused PID is
// never mistaken for it.
type procID struct {
	pid   int
	start uint64
}

// statFields returns the fields of /proc/PID/stat after the command name
// (field 3, the state, is index 0).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// Field positions in statFields' result (stat field N is index N-3).
const (
	statPPID      = 4 - 3
	statUtime     = 14 - 3
	statStime     = 15 - 3
	statStartTime = 22 - 3
)

// alive reports whether the process still runs and is the one recorded.
func (p procID) alive() bool {
	f, err := statFields(p.pid)
	if err != nil || len(f) <= statStartTime {
		return false
	}
	st, _ := strconv.ParseUint(f[statStartTime], 10, 64)
	return st == p.start && f[0] != "Z"
}

// childrenOf lists the direct children of pid by scanning /proc.
func childrenOf(pid int) []procID {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.Itoa(pid)
	var kids []procID
	for _, e := range ents {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(cpid)
		if err != nil || len(f) <= statStartTime || f[statPPID] != want {
			continue
		}
		st, _ := strconv.ParseUint(f[statStartTime], 10, 64)
		kids = append(kids, procID{pid: cpid, start: st})
	}
	return kids
}

// sampleTree sums CPU time, RSS and open descriptors of pid and its
// direct children (nginx's workers).
func sampleTree(pid int) (procStats, error) {
	pids := []int{pid}
	for _, k := range childrenOf(pid) {
		pids = append(pids, k.pid)
	}
	var s procStats
	for _, p := range pids {
		f, err := statFields(p)
		if err != nil || len(f) <= statStime {
			return s, fmt.Errorf("read CPU time of pid %d: %v", p, err)
		}
		ut, _ := strconv.ParseUint(f[statUtime], 10, 64)
		st, _ := strconv.ParseUint(f[statStime], 10, 64)
		s.CPU += float64(ut+st) / clockTicks
		rss, err := vmRSS(p)
		if err != nil {
			return s, err
		}
		s.RSS += rss
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		if err != nil {
			return s, fmt.Errorf("count descriptors of pid %d: %w", p, err)
		}
		s.FDs += float64(len(fds))
	}
	return s, nil
}

// vmRSS returns VmRSS of pid in bytes.
func vmRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS of pid %d: %q", pid, line)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
