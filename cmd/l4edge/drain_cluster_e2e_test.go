//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/l4edge/l4edge/admin"
	"github.com/l4edge/l4edge/admin/browsertest"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/tlsterm/redisstore/redistest"
)

// drainConfig is a passthrough listener and a two-backend pool, sharing
// state through the Redis at redisAddr.
func drainConfig(listen, adminAddr, redisAddr, weight string, backends [2]string) string {
	return fmt.Sprintf(`
log: {level: info, format: json}
admin: {listen: %s}
tls:
  storage:
    redis: {address: %s}
listeners:
  - name: edge
    listen: %s
    routes: [{pool: p}]
pools:
  p:
    backends:
      - {address: "%s", weight: %s}
      - {address: "%s"}
`, adminAddr, redisAddr, listen, backends[0], weight, backends[1])
}

// post sends POST url and returns the status code and decoded body.
func post(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// waitState waits until every admin shows addr in state, and returns how long it took.
func waitState(t *testing.T, admins []string, addr, state string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for _, a := range admins {
		for backendState(t, a, "p", addr) != state {
			if time.Since(start) > within {
				t.Fatalf("%s shows %s %s, not %s, after %s", a, addr, backendState(t, a, "p", addr), state, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// A cluster-wide drain reaches every member within 2 s, a member that
// joins later learns it, a local enable leaves it in place, and it
// survives Redis coming back empty.
func TestClusterDrain(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ports := testpeer.FreePorts(t, 10)
	var admins []string
	backends := [2]string{testpeer.Echo(t).Addr(), testpeer.Echo(t).Addr()}
	be := backends[0]
	start := func(i int, weight string) *proc {
		listen, adm := fmt.Sprintf("127.0.0.1:%d", ports[2*i]), fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
		admins = append(admins, adm)
		p := startL4edge(t, drainConfig(listen, adm, srv.Addr, weight, backends), listen)
		waitListening(t, adm, 5*time.Second)
		return p
	}
	for i := range 3 {
		start(i, "1")
	}
	code, body := post(t, "http://"+admins[0]+"/pools/p/backends/"+be+"/drain?scope=cluster")
	if code != 200 || body["scope"] != "cluster" || body["state"] != "draining" {
		t.Fatalf("drain?scope=cluster: %d %v", code, body)
	}
	took := waitState(t, admins, be, "draining", 2*time.Second)
	t.Logf("cluster drain applied on 3 members within %s", took.Round(time.Millisecond))

	start(3, "1")
	waitState(t, admins[3:], be, "draining", 2*time.Second)
	var v admin.StatusDoc
	getJSON(t, "http://"+admins[3]+"/status", &v)
	if len(v.Cluster.Members) != 4 || len(v.Cluster.Drift) != 0 || len(v.Cluster.Drains) != 1 {
		t.Fatalf("fourth member's cluster view: %+v", v.Cluster)
	}
	resp, err := http.Get("http://" + admins[3] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "\nl4edge_cluster_members 4\n") {
		t.Fatal("the fourth member's l4edge_cluster_members is not 4")
	}
	start(4, "5") // a different configuration
	getJSON(t, "http://"+admins[4]+"/status", &v)
	if len(v.Cluster.Drift) != 4 || slices.Contains(v.Cluster.Drift, v.Cluster.Self) {
		t.Fatalf("the differing member sees drift %v (self %s)", v.Cluster.Drift, v.Cluster.Self)
	}
	clusterOnPage(t, admins[4], 5, 4)

	if code, body := post(t, "http://"+admins[1]+"/pools/p/backends/"+be+"/enable"); code != 200 || body["state"] != "draining" {
		t.Fatalf("a local enable undid the cluster drain: %d %v", code, body)
	}
	if code, body := post(t, "http://"+admins[1]+"/pools/p/backends/"+be+"/drain?scope=everywhere"); code != 400 ||
		!strings.Contains(fmt.Sprint(body["error"]), "not local or cluster") {
		t.Fatalf("bad scope: %d %v", code, body)
	}

	srv.Stop()
	srv.Restart() // empty: the members write the drain back within a heartbeat
	deadline := time.Now().Add(15 * time.Second)
	for srv.Command("HEXISTS", "l4edge:drains", "p\x00"+be) != ":1" {
		if time.Now().After(deadline) {
			t.Fatal("the drain was not written back after Redis came back empty")
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitState(t, admins, be, "draining", time.Second)

	if code, body := post(t, "http://"+admins[1]+"/pools/p/backends/"+be+"/enable?scope=cluster"); code != 200 || body["scope"] != "cluster" {
		t.Fatalf("enable?scope=cluster: %d %v", code, body)
	}
	if code, body := post(t, "http://"+admins[1]+"/pools/p/backends/"+be+"/drain?scope=cluster"); code != 200 || body["scope"] != "cluster" {
		t.Fatalf("drain?scope=cluster: %d %v", code, body)
	}
	waitState(t, admins, be, "draining", 2*time.Second)
	// The command line, as an operator types it.
	var stdout, stderr strings.Builder
	if code := run([]string{"enable", "-admin", admins[2], "-scope", "cluster", "p", be}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "cluster-wide") {
		t.Fatalf("l4edge enable -scope cluster: exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	took = waitState(t, admins, be, "healthy", 2*time.Second)
	t.Logf("cluster enable applied on 5 members within %s", took.Round(time.Millisecond))
}

// clusterOnPage opens a member's status page in Chromium and wants its
// cluster section to list members (drifted of them marked as drift), the
// cluster-wide drain and Redis storage up.
func clusterOnPage(t *testing.T, adminAddr string, members, drifted int) {
	t.Helper()
	ctx := browsertest.Start(t, time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+adminAddr+"/"),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll('#cluster tr[data-member]').length == %d`, members),
			chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the status page of %s does not list %d cluster members: %v", adminAddr, members, err)
	}
	type view struct {
		Drift, Drains int
		Storage       string
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[view](`({
		drift: [...document.querySelectorAll('#cluster tr[data-member]')].filter(r => r.textContent.includes('(drift)')).length,
		drains: [...document.querySelectorAll('#cluster tbody tr')].filter(r => !r.dataset.member).length,
		storage: document.querySelector('#storage .badge').textContent})`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Drift != drifted || got.Drains != 1 || got.Storage != "up" {
		t.Fatalf("status page of %s: %d members marked drift, %d cluster drains, storage %q; want %d, 1, up", adminAddr, got.Drift, got.Drains, got.Storage, drifted)
	}
}
