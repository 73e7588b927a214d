//go:build linux

package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/l4edge/l4edge/internal/testpeer"
)

// fdList names what each of pid's descriptors refers to.
func fdList(pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		out = append(out, e.Name()+"->"+target)
	}
	return out
}

// fdsBackTo waits up to 5 s for pid's descriptors to fall to base and
// returns the last count and how long it took.
func fdsBackTo(t *testing.T, pid, base int) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		n := testpeer.ProcFDs(t, pid)
		if n <= base || time.Since(start) > 5*time.Second {
			return n, time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// echoHello sends a ClientHello through a passthrough route to an echo
// backend and checks it comes back.
func echoHello(t *testing.T, addr string, hello []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("l4edge stopped accepting: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(hello)
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, hello) {
		t.Fatalf("a ClientHello through %s: %v", addr, err)
	}
}

// hostileBytes returns 0-20 KiB of random bytes: plain noise, noise after
// a TLS record header, or a real ClientHello cut short and followed by
// noise.
func hostileBytes(r *rand.Rand, hello []byte) []byte {
	b := make([]byte, r.IntN(20<<10+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	switch r.IntN(3) {
	case 1:
		if len(b) >= 5 {
			copy(b, []byte{0x16, 0x03, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
	case 2:
		copy(b, hello[:r.IntN(len(hello))])
	}
	return b
}

// 2,000 connections of random bytes (0-20 KiB) at a listener with SNI
// routes and no catch-all: l4edge stays up, its descriptors are back to
// the baseline within 5 s and its RSS within 20 MB of where it started.
func TestRandomBytesFlood(t *testing.T) {
	const conns, workers = 2000, 50
	echo := testpeer.Echo(t).Addr()
	addr := testpeer.FreeAddrs(t, 1)[0]
	l4 := startL4edge(t, fmt.Sprintf(`
log: {level: info, format: json}
listeners:
  - name: edge
    listen: %s
    inspect_timeout: 2s
    routes:
      - {name: a, pool: p, match: {sni: [a.test]}}
      - {name: b, pool: p, match: {sni: ["*.b.test"]}}
pools:
  p: {backends: [{address: %s}]}
`, addr, echo), addr)
	pid := l4.cmd.Process.Pid
	hello := testpeer.ClientHello(t, &tls.Config{ServerName: "a.test"})
	// Fill the event loops' pipe caches (bounded, kept for reuse) as the
	// flood's routed connections will, before the baseline: 50 at once
	// relaying a hello and 20 KiB after it.
	var warm sync.WaitGroup
	for range workers {
		warm.Add(1)
		go func() {
			defer warm.Done()
			sendHostile(addr, append(bytes.Clone(hello), make([]byte, 20<<10)...))
		}()
	}
	warm.Wait()
	echoHello(t, addr, hello)
	time.Sleep(200 * time.Millisecond)
	logs0 := len(l4.accessLogs())
	fd0, rss0 := testpeer.ProcFDs(t, pid), testpeer.ProcRSS(t, pid)
	fdList0 := fdList(pid)

	seed := uint64(time.Now().UnixNano())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var hung int
	var slowest time.Duration
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for range conns / workers {
				if time.Since(start) > 30*time.Second {
					return // a broken build: do not wait 5s for each of them
				}
				d, ok := sendHostile(addr, hostileBytes(r, hello))
				mu.Lock()
				slowest = max(slowest, d)
				if !ok {
					hung++
				}
				mu.Unlock()
			}
		}()
	}
	finished, peak := make(chan struct{}), make(chan int)
	go func() { // the peak of l4edge's descriptors during the flood
		most := 0
		for {
			if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
				most = max(most, len(ents))
			}
			select {
			case <-finished:
				peak <- most
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	wg.Wait()
	close(finished)
	peakFDs := <-peak
	took := time.Since(start)
	fd1, back := fdsBackTo(t, pid, fd0)
	rss1 := testpeer.ProcRSS(t, pid)
	if fd1 > fd0 {
		t.Logf("descriptors before: %v\nafter: %v", fdList0, fdList(pid))
	}
	echoHello(t, addr, hello) // still serving

	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(l4.accessLogs())-logs0 >= conns+1 {
			break // the last record follows its client's close
		}
	}
	reasons, routed := map[string]int{}, 0
	for _, e := range l4.accessLogs()[logs0:] {
		reasons[fmt.Sprint(e["close"])]++
		if e["route"] != "" {
			routed++ // a real hello whose key share was overwritten by noise
		}
	}
	report := fmt.Sprintf("%d connections of 0-20 KiB random bytes (seed %d) in %s: slowest closed after %s, %d not closed within 5s; descriptors %d before, peak %d, %d after %s; RSS %.1f MB before, %.1f MB after; close reasons %v (%d of them routed by a valid SNI)",
		conns, seed, took.Round(time.Millisecond), slowest.Round(time.Millisecond), hung, fd0, peakFDs, fd1, back.Round(time.Millisecond),
		float64(rss0)/1e6, float64(rss1)/1e6, reasons, routed)
	t.Log(report)
	switch {
	case hung > 0 || reasons["no_route"]+reasons["invalid_client_hello"]+reasons["client_closed"] < conns:
		t.Fatalf("connections left open or unsent: %s", report)
	case fd1 > fd0:
		t.Fatalf("descriptors not back to the baseline within 5s: %s", report)
	case rss1-rss0 > 20<<20:
		t.Fatalf("RSS grew by more than 20 MB: %s", report)
	case reasons["no_route"]+reasons["invalid_client_hello"]+reasons["client_closed"] != conns+1: // +1: the check after
		t.Fatalf("not every connection has an access record with a close reason: %s", report)
	}
}

// sendHostile writes b, half-closes, and waits up to 5 s for l4edge to end
// the connection; it returns how long that took and whether it did.
func sendHostile(addr string, b []byte) (time.Duration, bool) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, false
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(5 * time.Second))
	_, _ = c.Write(b) // l4edge may close before it has read everything
	_ = c.(*net.TCPConn).CloseWrite()
	_, err = io.Copy(io.Discard, c)
	return time.Since(start), !errors.Is(err, os.ErrDeadlineExceeded)
}

// A wsecho backend killed with SIGKILL under 50 open connections: exactly
// its connections end, at once, with a backend close reason; the other
// backend's 50 are not cut; new connections are served by the other;
// l4edge's descriptors come back.
func TestBackendKilledUnderOpenConnections(t *testing.T) {
	const open = 100 // round robin: 50 on each backend
	ports := testpeer.FreePorts(t, 3)
	victimAddr, otherAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	victim := startProc(t, filepath.Join(binDir, "wsecho"), "-listen", victimAddr, "-name", "victim")
	startProc(t, filepath.Join(binDir, "wsecho"), "-listen", otherAddr, "-name", "other")
	waitListening(t, victimAddr, 10*time.Second)
	waitListening(t, otherAddr, 10*time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	l4 := startL4edge(t, edgeConfig(addr, "", "", victimAddr, otherAddr), addr)
	pid := l4.cmd.Process.Pid
	msg := func(i int) []byte { return []byte(fmt.Sprintf("message %08d\n", i)) } // 8+ bytes: wsecho echoes at once
	roundTrip := func(c net.Conn, i int) error {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		defer c.SetDeadline(time.Time{})
		if _, err := c.Write(msg(i)); err != nil {
			return err
		}
		got := make([]byte, len(msg(i)))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if !bytes.Equal(got, msg(i)) {
			return fmt.Errorf("echo %q, want %q", got, msg(i))
		}
		return nil
	}
	for i := range 8 { // warm the event loops' pipe caches
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := roundTrip(c, i); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	fd0, rss0 := testpeer.ProcFDs(t, pid), testpeer.ProcRSS(t, pid)
	logs0 := len(l4.accessLogs())

	conns := make([]net.Conn, open)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(c, i); err != nil {
			t.Fatalf("connection %d before the kill: %v", i, err)
		}
		conns[i] = c
	}
	fdOpen := testpeer.ProcFDs(t, pid)

	// Every connection keeps echoing, 10ms apart, through the kill.
	var killedAt atomic.Int64
	closedAfter := make([]time.Duration, open) // since the kill; 0: never ended
	trips := make([]int, open)                 // round trips after the kill
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				err := roundTrip(c, 10000*(i+1)+k)
				at := killedAt.Load()
				if err != nil {
					if at == 0 {
						t.Errorf("connection %d failed before the kill: %v", i, err)
						return
					}
					// The backend's end reached the client: it closes, as a
					// client does at an error or EOF.
					closedAfter[i] = time.Since(time.Unix(0, at))
					c.Close()
					return
				}
				if at != 0 {
					trips[i]++
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	killedAt.Store(time.Now().UnixNano())
	victim.signal(syscall.SIGKILL)
	victim.wait(5 * time.Second)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The access records of the ended connections follow their close.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if l4.countLog(`"msg":"connection"`, victimAddr) >= open/2 {
			break
		}
	}
	byPort := map[string]int{}
	for i, c := range conns {
		byPort[c.LocalAddr().String()] = i
	}
	ended, cut, slowest := 0, 0, time.Duration(0)
	reasons := map[string]int{}
	for _, e := range l4.accessLogs()[logs0:] {
		i, ok := byPort[fmt.Sprint(e["client"])]
		if !ok {
			continue
		}
		if e["backend"] != victimAddr {
			cut++
			continue
		}
		ended++
		reasons[fmt.Sprint(e["close"])]++
		if closedAfter[i] == 0 {
			t.Fatalf("connection %d: access record %v but the client saw no close", i, e)
		}
		slowest = max(slowest, closedAfter[i])
	}
	closedSeen, survivorTrips := 0, 0
	for i := range conns {
		if closedAfter[i] != 0 {
			closedSeen++
		} else {
			survivorTrips += trips[i]
		}
	}
	if closedSeen != open/2 {
		t.Fatalf("%d of %d connections saw their end within 1s of the kill; want the %d on the killed backend (round robin)", closedSeen, open, open/2)
	}
	for i, c := range conns {
		if closedAfter[i] != 0 {
			continue
		}
		if err := roundTrip(c, 1000+i); err != nil {
			t.Fatalf("connection %d to the surviving backend was cut: %v", i, err)
		}
	}
	if ended != open/2 || closedSeen != ended || cut != 0 || slowest > time.Second ||
		reasons["backend_closed"]+reasons["backend_reset"] != ended {
		t.Fatalf("after SIGKILL: %d records on the killed backend (want %d), %d closes seen by clients, %d other connections ended, slowest close %s after the kill (want within 1s), reasons %v",
			ended, open/2, closedSeen, cut, slowest, reasons)
	}
	var newSlowest time.Duration
	for i := range 20 {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := roundTrip(c, 2000+i); err != nil {
			t.Fatalf("new connection %d after the kill: %v", i, err)
		}
		c.Close()
		newSlowest = max(newSlowest, time.Since(start))
	}
	for _, c := range conns {
		c.Close()
	}
	fd1, back := fdsBackTo(t, pid, fd0)
	rss1 := testpeer.ProcRSS(t, pid)
	report := fmt.Sprintf("SIGKILL of a backend holding %d of %d echoing connections: %d closed (reasons %v), slowest %s after the kill; the other %d intact (%d round trips in the second after the kill); 20 new connections, slowest %s; descriptors %d before, %d with %d open, %d after %s; RSS %.1f MB before, %.1f MB after",
		open/2, open, ended, reasons, slowest.Round(time.Millisecond), open-ended, survivorTrips, newSlowest.Round(time.Millisecond),
		fd0, fdOpen, open, fd1, back.Round(time.Millisecond), float64(rss0)/1e6, float64(rss1)/1e6)
	t.Log(report)
	if fd1 > fd0 || newSlowest > time.Second {
		t.Fatalf("after the kill: %s", report)
	}
}
