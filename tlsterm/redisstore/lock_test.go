package redisstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/l4edge/l4edge/tlsterm/redisstore/redistest"
)

// TestMain doubles as the helper process of the multi-process tests:
// with REDISSTORE_HELPER set it contends for a lock instead of testing.
func TestMain(m *testing.M) {
	if mode := os.Getenv("REDISSTORE_HELPER"); mode != "" {
		os.Exit(helper(mode, os.Getenv("REDISSTORE_ADDR")))
	}
	os.Exit(m.Run())
}

// helper "contend" takes the lock 10 times, logging start/end entries to
// the list "holders"; "hold" takes it, says "locked" and waits to be killed.
func helper(mode, addr string) int {
	s := New(Options{Address: addr, Prefix: "lk", Lease: 2 * time.Second})
	ctx := context.Background()
	id := strconv.Itoa(os.Getpid())
	switch mode {
	case "hold":
		if err := s.Lock(ctx, "name"); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
	case "contend":
		for range 10 {
			if err := criticalSection(ctx, s, id); err != nil {
				fmt.Println("error", err)
				return 1
			}
		}
	}
	return 0
}

// criticalSection holds the lock while it appends start and end markers
// to a Redis list; overlapping holders interleave their markers.
func criticalSection(ctx context.Context, s *Storage, id string) error {
	if err := s.Lock(ctx, "name"); err != nil {
		return err
	}
	s.client.RPush(ctx, "holders", "start "+id)
	time.Sleep(2 * time.Millisecond)
	s.client.RPush(ctx, "holders", "end "+id)
	return s.Unlock(ctx, "name")
}

// checkHolders reads the list back: every start is followed by the end of
// the same holder.
func checkHolders(t *testing.T, s *Storage, want int) {
	t.Helper()
	got, err := s.client.LRange(context.Background(), "holders", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*want {
		t.Fatalf("%d entries, want %d", len(got), 2*want)
	}
	for i := 0; i < len(got); i += 2 {
		if id, ok := strings.CutPrefix(got[i], "start "); !ok || got[i+1] != "end "+id {
			t.Fatalf("two holders at once at entry %d: %q then %q", i, got[i], got[i+1])
		}
	}
}

func TestLockGoroutines(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := newStore(t, srv.Addr, "lk")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if err := criticalSection(context.Background(), s, fmt.Sprint("g", g)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkHolders(t, s, 100)
}

func helperCmd(t *testing.T, mode, addr string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "REDISSTORE_HELPER="+mode, "REDISSTORE_ADDR="+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

func TestLockProcesses(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := newStore(t, srv.Addr, "lk")
	var cmds []*exec.Cmd
	for range 3 {
		cmd, _ := helperCmd(t, "contend", srv.Addr)
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("process %d: %v", i, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("process %d did not finish", i)
		}
	}
	checkHolders(t, s, 30)
}

// A holder killed with SIGKILL cannot unlock; its lease (2s) runs out and
// another takes the lock, not before.
func TestLockHolderKilled(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := newStore(t, srv.Addr, "lk")
	cmd, out := helperCmd(t, "hold", srv.Addr)
	if !out.Scan() || out.Text() != "locked" {
		t.Fatalf("helper: %q", out.Text())
	}
	time.Sleep(3 * time.Second) // longer than the lease: the holder renews it
	if ok, err := s.TryLock(context.Background(), "name"); ok || err != nil {
		t.Fatalf("a live holder's renewed lock was taken: %v %v", ok, err)
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	killed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Lock(ctx, "name"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	t.Logf("lock taken %s after the holder was killed", took)
	if took > 3*time.Second {
		t.Fatalf("took %s, lease is 2s", took)
	}
	_ = s.Unlock(context.Background(), "name")
}

// A holder whose lease ran out must not release the lock of the holder
// that took it over.
func TestExpiredUnlock(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := newStore(t, srv.Addr, "lk")
	b := newStore(t, srv.Addr, "lk")
	ctx := context.Background()
	if err := a.Lock(ctx, "name"); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.held["name"].stopRenewal() // a stalls: its lease runs out
	a.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Lock(wctx, "name"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "name"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.TryLock(ctx, "name"); ok {
		t.Fatal("the expired holder's Unlock released the new holder's lock")
	}
	if err := a.RenewLockLease(ctx, "name", time.Minute); err == nil {
		t.Fatal("a lock not held was renewed")
	}
	if err := b.RenewLockLease(ctx, "name", time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := strconv.Atoi(strings.TrimPrefix(srv.Command("PTTL", "lk:lock:name"), ":")); ttl < 50000 {
		t.Fatalf("lease after RenewLockLease: %dms", ttl)
	}
	if err := b.Unlock(ctx, "name"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.TryLock(ctx, "name"); !ok {
		t.Fatal("lock not free after its holder unlocked")
	}
}
