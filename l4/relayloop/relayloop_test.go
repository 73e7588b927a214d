//go:build linux

package relayloop

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

// pair is a relayed connection: the test holds the client's and the
// backend's far ends; the relay holds the two middle sockets.
type pair struct {
	client, backend *net.TCPConn
	flow            *Flow
	done            chan Result
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB, ln *net.TCPListener) (near, far *net.TCPConn) {
	t.Helper()
	type res struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.AcceptTCP(); ch <- res{c, err} }()
	d, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.c, d
}

func listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func newPair(t testing.TB, r *Relay, ln *net.TCPListener, idle time.Duration) *pair {
	t.Helper()
	proxyClient, client := tcpPair(t, ln) // client dials the proxy
	proxyBackend, backend := tcpPair(t, ln)
	p := &pair{client: client, backend: backend, done: make(chan Result, 1)}
	p.flow = &Flow{}
	if err := r.Start(p.flow, proxyClient, proxyBackend, idle, DoneFunc(func(res Result) { p.done <- res })); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); backend.Close() })
	return p
}

func newRelay(t testing.TB) *Relay {
	t.Helper()
	r, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func (p *pair) result(t testing.TB) Result {
	t.Helper()
	select {
	case r := <-p.done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("flow did not finish")
	}
	return Result{}
}

// 16 MiB each way at once arrive intact, and the counts match.
func TestIntegrityBothWays(t *testing.T) {
	r := newRelay(t)
	p := newPair(t, r, listen(t), 0)
	const size = 16 << 20
	up, down := make([]byte, size), make([]byte, size)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)
	var wg sync.WaitGroup
	var gotUp, gotDown []byte
	send := func(c *net.TCPConn, b []byte) { _, _ = c.Write(b); _ = c.CloseWrite() }
	wg.Add(4)
	go func() { defer wg.Done(); send(p.client, up) }()
	go func() { defer wg.Done(); send(p.backend, down) }()
	go func() { defer wg.Done(); gotUp, _ = io.ReadAll(p.backend) }()
	go func() { defer wg.Done(); gotDown, _ = io.ReadAll(p.client) }()
	wg.Wait()
	if sha256.Sum256(gotUp) != sha256.Sum256(up) || sha256.Sum256(gotDown) != sha256.Sum256(down) {
		t.Fatalf("corrupted: up %d/%d down %d/%d bytes", len(gotUp), size, len(gotDown), size)
	}
	res := p.result(t)
	if res.ToBackend != size || res.ToClient != size || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
}

// The client's FIN reaches the backend, which still answers; the client
// reads the answer and then EOF; the flow reports client_closed.
func TestHalfClose(t *testing.T) {
	r := newRelay(t)
	p := newPair(t, r, listen(t), 0)
	_, _ = p.client.Write([]byte("request"))
	_ = p.client.CloseWrite()
	req, err := io.ReadAll(p.backend)
	if err != nil || string(req) != "request" {
		t.Fatalf("backend read %q, %v", req, err)
	}
	time.Sleep(50 * time.Millisecond)
	_, _ = p.backend.Write([]byte("late reply"))
	_ = p.backend.CloseWrite()
	reply, err := io.ReadAll(p.client)
	if err != nil || string(reply) != "late reply" {
		t.Fatalf("client read %q, %v", reply, err)
	}
	if res := p.result(t); res.Reason != closereason.ClientClosed || res.ToBackend != 7 || res.ToClient != 10 {
		t.Fatalf("result %+v", res)
	}
}

func TestBackendResetIsReported(t *testing.T) {
	r := newRelay(t)
	p := newPair(t, r, listen(t), 0)
	_ = p.backend.SetLinger(0)
	p.backend.Close()
	res := p.result(t)
	if res.Reason != closereason.BackendClosed || res.Err == nil {
		t.Fatalf("result %+v, want backend_closed with an error", res)
	}
	if _, err := io.ReadAll(p.client); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Logf("client sees %v", err)
	}
}

// Idle flows end after their timeout; a flow moving bytes one way does not.
func TestIdleTimeout(t *testing.T) {
	r := newRelay(t)
	ln := listen(t)
	quiet := newPair(t, r, ln, 300*time.Millisecond)
	busy := newPair(t, r, ln, 300*time.Millisecond)
	stop := time.After(900 * time.Millisecond)
	go func() { _, _ = io.Copy(io.Discard, busy.backend) }()
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-time.After(50 * time.Millisecond):
			if _, err := busy.client.Write([]byte("tick")); err != nil {
				t.Fatalf("busy flow cut: %v", err)
			}
		}
	}
	res := quiet.result(t)
	if res.Reason != closereason.IdleTimeout {
		t.Fatalf("quiet flow: %+v", res)
	}
	select {
	case res := <-busy.done:
		t.Fatalf("busy flow ended: %+v", res)
	default:
	}
	busy.flow.Close("test")
	if res := busy.result(t); res.Reason != "test" || res.ToBackend == 0 {
		t.Fatalf("forced: %+v", res)
	}
}

// Idle flows hold two descriptors each and no goroutine.
func TestIdleFlowsCostTwoDescriptors(t *testing.T) {
	r := newRelay(t)
	ln := listen(t)
	const n = 200
	g0 := runtime.NumGoroutine()
	f0 := testpeer.OpenFDs(t)
	pairs := make([]*pair, 0, n)
	for range n {
		pairs = append(pairs, newPair(t, r, ln, 0))
	}
	// The test holds the two far ends of each pair; the relay the two middles.
	if got := testpeer.OpenFDs(t) - f0; got != 4*n {
		t.Fatalf("%d descriptors for %d flows, want %d (2 relay + 2 test ends each)", got, n, 4*n)
	}
	if g := runtime.NumGoroutine(); g > g0+5 {
		t.Fatalf("goroutines %d -> %d for %d idle flows", g0, g, n)
	}
	for _, p := range pairs {
		p.client.Close()
		p.backend.Close()
	}
	for _, p := range pairs {
		p.result(t)
	}
	r.Close() // releases the loops' cached pipes too
	deadline := time.Now().Add(3 * time.Second)
	for testpeer.OpenFDs(t) > f0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testpeer.OpenFDs(t); got > f0 {
		t.Fatalf("descriptors %d -> %d after every flow ended", f0, got)
	}
}

// One flow streaming flat out does not starve small exchanges on its loop.
func TestFairness(t *testing.T) {
	r, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ln := listen(t)
	hog := newPair(t, r, ln, 0)
	small := newPair(t, r, ln, 0)
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, hog.backend) }()
	go func() {
		buf := make([]byte, 1<<20)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := hog.client.Write(buf); err != nil {
				return
			}
		}
	}()
	defer close(stop)
	go func() { _, _ = io.Copy(small.backend, small.backend) }() // echo at the backend
	for i := range 50 {
		start := time.Now()
		_, _ = small.client.Write([]byte("ping"))
		buf := make([]byte, 4)
		_ = small.client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(small.client, buf); err != nil || !bytes.Equal(buf, []byte("ping")) {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("round trip %d took %s beside a busy flow", i, el)
		}
	}
}

// Flows of many sizes, each ended by a FIN: an EOF read on the last splice
// of a wake-up's budget is still passed on, and every flow finishes.
func TestEOFAtEveryBudgetBoundary(t *testing.T) {
	r := newRelay(t)
	for _, l := range r.loops {
		l.budget = 1 // every EOF lands on the last splice of a wake-up
	}
	ln := listen(t)
	const flows = 2 * defaultBudget
	var wg sync.WaitGroup
	errs := make(chan error, flows)
	for i := range flows {
		p := newPair(t, r, ln, 0)
		size := i*defaultPipeSize + 1 + i // a different number of splices before EOF for each
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() { _, _ = io.Copy(p.backend, p.backend); _ = p.backend.CloseWrite() }()
			go func() { _, _ = p.client.Write(make([]byte, size)); _ = p.client.CloseWrite() }()
			_ = p.client.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(p.client)
			if err != nil || len(got) != size {
				errs <- fmt.Errorf("flow of %d bytes: %d back, %v", size, len(got), err)
				return
			}
			if res := p.result(t); res.ToBackend != int64(size) || res.ToClient != int64(size) {
				errs <- fmt.Errorf("flow of %d bytes: result %+v", size, res)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A loop enlarges its first maxBigPipes pipes to bigPipeSize and no more, so
// a process stays far below the kernel's per-user pipe allowance; closing a
// big pipe lets the next new one be big again.
func TestBigPipesAreBounded(t *testing.T) {
	l, err := newLoop(1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.shutdown()
	var got []*pipe
	big := 0
	for range maxBigPipes + 4 {
		p, err := l.getPipe()
		if err != nil {
			t.Fatal(err)
		}
		size, err := unix.FcntlInt(uintptr(p.r), unix.F_GETPIPE_SZ, 0)
		if err != nil || size != p.size {
			t.Fatalf("pipe capacity %d (%v), recorded %d", size, err, p.size)
		}
		if p.size == bigPipeSize {
			big++
		}
		got = append(got, p)
	}
	if big != maxBigPipes {
		t.Fatalf("%d big pipes of %d, want %d", big, len(got), maxBigPipes)
	}
	l.putPipe(got[0], false) // holds bytes: closed, not kept
	l.closeFinished()
	if p, err := l.getPipe(); err != nil || p.size != bigPipeSize {
		t.Fatalf("after a big pipe closed, a new pipe has %d bytes (%v), want %d", p.size, err, bigPipeSize)
	}
}

// A watch fires once per arming when its socket is readable, and never
// after Stop.
func TestWatchFiresOncePerArm(t *testing.T) {
	r := newRelay(t)
	ln := listen(t)
	local, peer := tcpPair(t, ln)
	fired := make(chan struct{}, 4)
	w, err := r.NewWatch(func() { fired <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	rc, err := local.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	withFD := func(f func(int) error) {
		t.Helper()
		var ferr error
		if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil || ferr != nil {
			t.Fatal(err, ferr)
		}
	}
	expect := func(want bool, what string) {
		t.Helper()
		select {
		case <-fired:
			if !want {
				t.Fatalf("%s: the watch fired", what)
			}
		case <-time.After(200 * time.Millisecond):
			if want {
				t.Fatalf("%s: the watch did not fire", what)
			}
		}
	}
	withFD(w.Add)
	expect(false, "nothing sent")
	_, _ = peer.Write([]byte("x"))
	expect(true, "a byte sent")
	_, _ = peer.Write([]byte("y"))
	expect(false, "not armed again")
	withFD(w.Arm)
	expect(true, "armed with bytes unread") // level-triggered: the unread bytes count
	w.Stop()
	withFD(w.Arm)
	expect(false, "stopped")
}

// Small messages to a backend that does not read for a while: the loop
// copies them, keeps what the full destination cannot take in a pipe, and
// delivers every byte in order once the backend reads.
func TestSmallMessagesToAFullDestination(t *testing.T) {
	r := newRelay(t)
	ln := listen(t)
	proxyClient, client := tcpPair(t, ln)
	proxyBackend, backend := tcpPair(t, ln)
	_ = proxyBackend.SetWriteBuffer(4096)
	t.Cleanup(func() { client.Close(); backend.Close() })
	done := make(chan Result, 1)
	if err := r.Start(&Flow{}, proxyClient, proxyBackend, 0, DoneFunc(func(res Result) { done <- res })); err != nil {
		t.Fatal(err)
	}
	const msgs, size = 400, 1000
	want := make([]byte, msgs*size)
	_, _ = rand.Read(want)
	go func() {
		for i := range msgs {
			_, _ = client.Write(want[i*size : (i+1)*size])
			time.Sleep(200 * time.Microsecond)
		}
		_ = client.CloseWrite()
	}()
	time.Sleep(300 * time.Millisecond) // the backend does not read: its side fills up
	_ = backend.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(backend)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("backend got %d of %d bytes (equal: %v), %v", len(got), len(want), bytes.Equal(got, want), err)
	}
	_ = backend.CloseWrite()
	select {
	case res := <-done:
		if res.ToBackend != int64(len(want)) {
			t.Fatalf("result %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("flow did not finish")
	}
	var stashed int64
	for _, l := range r.loops {
		stashed += l.stashed.Load()
	}
	if stashed == 0 {
		t.Fatal("the destination never filled: the test did not exercise keeping copied bytes in a pipe")
	}
}
