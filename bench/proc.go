//go:build linux

package main

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailBuffer keeps the last max bytes written to it: a child's output,
// shown when it fails.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

// Write implements io.Writer.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns what is kept, trimmed.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// proc is a child process the harness started. Only processes started
// through proc are ever signalled, and only by their own PID (or, for
// nginx workers, by the PIDs of the started process's own children,
// checked against their start time).
type proc struct {
	name string
	cmd  *exec.Cmd
	tail *tailBuffer
	done chan struct{}
	err  error // Wait's result; read only after done is closed
}

// newProc prepares cmd to run as name: its standard error (and standard
// output, unless already set) goes to a tail buffer, and it is killed if
// the harness dies.
func newProc(name string, cmd *exec.Cmd) *proc {
	p := &proc{name: name, cmd: cmd, tail: &tailBuffer{max: 16 << 10}, done: make(chan struct{})}
	cmd.Stderr = p.tail
	if cmd.Stdout == nil {
		cmd.Stdout = p.tail
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return p
}

// start starts the process and a goroutine that reaps it.
func (p *proc) start() error {
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s (%s): %w", p.name, p.cmd.Path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

// pid returns the process ID.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exitErr returns a description of the exit if the process has ended, else nil.
func (p *proc) exitErr() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) exited: %v; its output ends with:\n%s", p.name, p.pid(), p.err, p.tail.String())
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to grace, then SIGKILLs the process and
// any of its own children still alive.
func (p *proc) stop(grace time.Duration) error {
	if p.exitErr() != nil {
		return nil
	}
	kids := childrenOf(p.pid())
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", p.name, p.pid(), err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	var err error
	select {
	case <-p.done:
	case <-timer.C:
		err = fmt.Errorf("%s (pid %d) did not stop within %v of SIGTERM; killed", p.name, p.pid(), grace)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	// nginx workers exit with their master; make sure of it.
	deadline := time.Now().Add(grace)
	for _, k := range kids {
		for k.alive() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if k.alive() {
			_ = syscall.Kill(k.pid, syscall.SIGKILL)
		}
	}
	return err
}
