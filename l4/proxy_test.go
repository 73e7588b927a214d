package l4

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4/closereason"
)

func catchAll(pool string) config.Route { return config.Route{Name: "all", Pool: pool} }

// 64 MiB of random bytes each way, compared by SHA-256 on the far side.
func TestByteIntegrity64MiB(t *testing.T) {
	const size = 64 << 20
	type digest struct {
		sum [32]byte
		n   int64
	}
	got := make(chan digest, 1)
	back := testpeer.Serve(t, func(c *net.TCPConn) {
		// Send our own 64 MiB while hashing what arrives.
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(c, io.LimitReader(newSeededStream(2), size))
			_ = c.CloseWrite()
		}()
		h := sha256.New()
		n, _ := io.Copy(h, c)
		var d digest
		copy(d.sum[:], h.Sum(nil))
		d.n = n
		got <- d
		wg.Wait()
	})
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, testListener("l", catchAll("p"))), nil)
	c, err := net.Dial("tcp", h.addr("l"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := sha256.New()
	go func() {
		_, _ = io.Copy(io.MultiWriter(c, sent), io.LimitReader(newSeededStream(1), size))
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	recv := sha256.New()
	n, err := io.Copy(recv, c)
	if err != nil || n != size {
		t.Fatalf("client received %d bytes (err %v), want %d", n, err, size)
	}
	want := sha256.New()
	_, _ = io.Copy(want, io.LimitReader(newSeededStream(2), size))
	if !bytes.Equal(recv.Sum(nil), want.Sum(nil)) {
		t.Fatal("bytes to client corrupted")
	}
	d := <-got
	if d.n != size || !bytes.Equal(d.sum[:], sent.Sum(nil)) {
		t.Fatalf("backend got %d bytes, digest match %v", d.n, bytes.Equal(d.sum[:], sent.Sum(nil)))
	}
	rec := h.next(5 * time.Second)
	if rec.BytesToBackend != size || rec.BytesToClient != size {
		t.Fatalf("record counts %d/%d, want %d each", rec.BytesToBackend, rec.BytesToClient, size)
	}
}

// newSeededStream is a deterministic pseudo-random byte stream.
func newSeededStream(seed byte) io.Reader {
	var key [32]byte
	key[0] = seed
	return &hashStream{block: sha256.Sum256(key[:])}
}

type hashStream struct {
	block [32]byte
	off   int
}

func (s *hashStream) Read(p []byte) (int, error) {
	for i := range p {
		if s.off == len(s.block) {
			s.block = sha256.Sum256(s.block[:])
			s.off = 0
		}
		p[i] = s.block[s.off]
		s.off++
	}
	return len(p), nil
}

// The client sends and shuts its write half; the backend still replies
// after seeing EOF; the client reads it all and then sees EOF.
func TestHalfClose(t *testing.T) {
	back := testpeer.Serve(t, func(c *net.TCPConn) {
		req, err := io.ReadAll(c) // until the client's FIN
		if err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // reply well after the FIN
		fmt.Fprintf(c, "got %d bytes: %s", len(req), req)
		_ = c.CloseWrite()
	})
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", back.Addr())}, testListener("l", catchAll("p"))), nil)
	c, err := net.Dial("tcp", h.addr("l"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("hello"))
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := readAllTimeout(c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(reply) != "got 5 bytes: hello" {
		t.Fatalf("reply %q", reply)
	}
	rec := h.next(5 * time.Second)
	if rec.Close != closereason.ClientClosed || rec.BytesToBackend != 5 || rec.BytesToClient != int64(len(reply)) {
		t.Fatalf("record %+v", rec)
	}
}

func TestRoundRobinExact(t *testing.T) {
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, testpeer.Lines(t, fmt.Sprintf("b%d", i)).Addr())
	}
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", addrs...)}, testListener("l", catchAll("p"))), nil)
	counts := map[string]int{}
	for range 30 {
		counts[strings.Fields(ask(t, h.addr("l"), "hi"))[0]]++
	}
	for i := range 3 {
		if n := counts[fmt.Sprintf("b%d", i)]; n != 10 {
			t.Fatalf("counts %v, want 10 each", counts)
		}
	}
}

func TestWeightedThreeToOne(t *testing.T) {
	a := testpeer.Lines(t, "a")
	b := testpeer.Lines(t, "b")
	p := testPool("p", a.Addr(), b.Addr())
	p.Policy = config.PolicyWeightedRoundRobin
	p.Backends[0].Weight = 3
	h := startProxy(t, testConfig([]*config.Pool{p}, testListener("l", catchAll("p"))), nil)
	counts := map[string]int{}
	for range 40 {
		counts[strings.Fields(ask(t, h.addr("l"), "hi"))[0]]++
	}
	if counts["a"] != 30 || counts["b"] != 10 {
		t.Fatalf("counts %v, want a:30 b:10", counts)
	}
}

// One of three backends refuses: every client is served, and after its
// first failure the dead backend is never tried again.
func TestRetryPastRefusingBackend(t *testing.T) {
	deadAddr := testpeer.Refusing(t, 1)[0]
	a := testpeer.Lines(t, "a")
	b := testpeer.Lines(t, "b")
	h := startProxy(t, testConfig([]*config.Pool{testPool("p", a.Addr(), deadAddr, b.Addr())}, testListener("l", catchAll("p"))), nil)
	for i := range 100 {
		if reply := ask(t, h.addr("l"), "hi"); !strings.HasSuffix(reply, " hi") {
			t.Fatalf("connection %d: reply %q", i, reply)
		}
	}
	p := h.rt.Pools["p"]
	snap := p.Backend(deadAddr).Snapshot()
	if snap.Failures != 1 || snap.Total != 1 {
		t.Fatalf("dead backend: %d failures over %d tries, want exactly 1", snap.Failures, snap.Total)
	}
	if a.Conns()+b.Conns() != 100 {
		t.Fatalf("live backends served %d, want 100", a.Conns()+b.Conns())
	}
}
