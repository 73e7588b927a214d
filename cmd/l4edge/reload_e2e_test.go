//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/l4edge/l4edge/internal/testpeer"
)

func reloadConfig(addr string, backends []string, route string) string {
	list := ""
	for _, b := range backends {
		list += fmt.Sprintf("      - address: %s\n", b)
	}
	return fmt.Sprintf(`
log: {level: info, format: json, access: false}
listeners:
  - name: edge
    listen: %s
    routes: [{name: %s, pool: ws}]
pools:
  ws:
    backends:
%s`, addr, route, list)
}

// 200 WebSocket connections held open and a client opening new ones
// continuously, while the file is reloaded 20 times (alternately a changed
// pool and a changed route): no new connection fails, no held one drops,
// and each still echoes afterwards. A bad file is refused and changes nothing.
func TestReloadUnderLoad(t *testing.T) {
	addrs := testpeer.FreeAddrs(t, 4) // three backends and l4edge
	var backends []string
	for i, b := range addrs[:3] {
		startProc(t, filepath.Join(binDir, "wsecho"), "-listen", b, "-name", fmt.Sprintf("b%d", i))
		waitListening(t, b, 10*time.Second)
		backends = append(backends, b)
	}
	addr := addrs[3]
	path := filepath.Join(t.TempDir(), "l4edge.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadConfig(addr, backends[:2], "r0"))
	l4 := startProc(t, filepath.Join(binDir, "l4edge"), "run", "-config", path)
	waitListening(t, addr, 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	echo := func(c *websocket.Conn, msg string) error {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := c.Read(ctx)
		if err == nil && string(got) != msg {
			err = fmt.Errorf("echo %q, got %q", msg, got)
		}
		return err
	}
	held := make([]*websocket.Conn, 200)
	for i := range held {
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/held", nil)
		if err != nil {
			t.Fatalf("held connection %d: %v", i, err)
		}
		defer c.CloseNow()
		held[i] = c
	}

	var fresh, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // new connections, continuously, bounded by stop and ctx
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, _, err := websocket.Dial(ctx, "ws://"+addr+"/new", nil)
			if err == nil {
				err = echo(c, fmt.Sprintf("new %d", i))
				_ = c.Close(websocket.StatusNormalClosure, "")
			}
			fresh.Add(1)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}
	}()

	for round := 1; round <= 20; round++ {
		if round%2 == 1 {
			write(reloadConfig(addr, backends[:2+round/2%2], fmt.Sprintf("r%d", round/4))) // a changed pool
		} else {
			write(reloadConfig(addr, backends[:2+(round-1)/2%2], fmt.Sprintf("route-%d", round))) // a changed route
		}
		l4.signal(syscall.SIGHUP)
		deadline := time.Now().Add(5 * time.Second)
		for l4.countLog("configuration reloaded") < round {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d not logged", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The held connections keep talking during the reloads.
		for i := round % 10; i < len(held); i += 10 {
			if err := echo(held[i], fmt.Sprintf("held %d round %d", i, round)); err != nil {
				t.Fatalf("held connection %d during reload %d: %v", i, round, err)
			}
		}
	}
	// A file that does not validate is refused; traffic is unaffected.
	write("listeners: [{name: edge, listen: nonsense, routes: [{pool: missing}]}]\n")
	l4.signal(syscall.SIGHUP)
	l4.waitLog(5*time.Second, "reload refused", "unknown pool")
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	if failed.Load() != 0 || fresh.Load() < 20 {
		t.Fatalf("%d of %d new connections failed during reloads (first: %v)", failed.Load(), fresh.Load(), firstErr.Load())
	}
	for i, c := range held {
		if err := echo(c, fmt.Sprintf("after %d", i)); err != nil {
			t.Fatalf("held connection %d after the reloads: %v", i, err)
		}
	}
	t.Logf("%d new connections during 20 reloads, 200 held connections intact", fresh.Load())
}

// A removed listener stops accepting while its open connection finishes; a
// pool's health state survives a reload of an unrelated route; POST /reload
// on the admin API reloads like SIGHUP.
func TestReloadRemovesListenerKeepsHealth(t *testing.T) {
	echo := testpeer.Echo(t).Addr()
	dead := testpeer.Blackhole(t) // SYNs unanswered: each check takes its whole timeout
	ports := testpeer.FreePorts(t, 3)
	a := fmt.Sprintf("127.0.0.1:%d", ports[0])
	b := fmt.Sprintf("127.0.0.1:%d", ports[1])
	adminAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	cfg := func(withB bool, route string) string {
		s := fmt.Sprintf(`
log: {level: info, format: json}
admin: {listen: "%s"}
listeners:
  - name: a
    listen: %s
    routes: [{name: %s, pool: p}]
`, adminAddr, a, route)
		if withB {
			s += fmt.Sprintf("  - name: b\n    listen: %s\n    routes: [{name: rb, pool: p}]\n", b)
		}
		return s + fmt.Sprintf(`pools:
  p:
    backends: [{address: "%s"}, {address: "%s"}]
    health: {check: tcp, interval: 10s, timeout: 300ms, rise: 3, fall: 1}
`, echo, dead)
	}
	path := filepath.Join(t.TempDir(), "l4edge.yaml")
	if err := os.WriteFile(path, []byte(cfg(true, "r1")), 0o600); err != nil {
		t.Fatal(err)
	}
	l4 := startProc(t, filepath.Join(binDir, "l4edge"), "run", "-config", path)
	waitListening(t, b, 10*time.Second)
	l4.waitLog(5*time.Second, `"backend state changed"`, dead, `"new":"unhealthy"`)

	held, err := net.Dial("tcp", b)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, _ = held.Write([]byte("1"))
	one := make([]byte, 1)
	_ = held.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := held.Read(one); err != nil {
		t.Fatal(err)
	}

	// Drop listener b and rename a's route; reload through the admin API.
	if err := os.WriteFile(path, []byte(cfg(false, "r2")), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+adminAddr+"/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /reload: %d", resp.StatusCode)
	}
	if c, err := net.DialTimeout("tcp", b, time.Second); err == nil {
		c.Close()
		t.Fatal("the removed listener still accepts")
	}
	_, _ = held.Write([]byte("2"))
	if _, err := held.Read(one); err != nil || one[0] != '2' {
		t.Fatalf("open connection on the removed listener: %v", err)
	}
	// A reset state would start healthy and stay so until the first check
	// times out (300ms): the black hole makes that window certain.
	resp, err = http.Get("http://" + adminAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Pools []struct {
			Backends []struct{ Address, State string }
		}
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	for _, be := range st.Pools[0].Backends {
		if be.Address == dead && be.State != "unhealthy" {
			t.Fatalf("health state lost on reload: %s is %s", dead, be.State)
		}
	}
	held.Close()
	l4.waitLog(3*time.Second, `"msg":"connection"`, `"listener":"b"`, `"close":"client_closed"`)
}
