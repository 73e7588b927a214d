package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/config"
	"github.com/l4edge/l4edge/internal/testpeer"
	"github.com/l4edge/l4edge/l4"
)

type env struct {
	srv     *l4.Server
	pools   map[string]*balancer.Pool
	admin   *Server
	base    string
	proxy   string
	backend []string
	ready   error
}

func start(t *testing.T) *env { t.Helper(); return startWith(t, nil) }

// startWith is start, with tune applied to the admin server before it starts.
func startWith(t *testing.T, tune func(*Server)) *env {
	t.Helper()
	e := &env{}
	e.backend = []string{testpeer.Lines(t, "a").Addr(), testpeer.Lines(t, "b").Addr()}
	cfg := testpeer.Config(t, fmt.Sprintf(`
listeners: [{name: edge, listen: "127.0.0.1:0", inspect_timeout: 1s, handshake_timeout: 1s, routes: [{name: all, pool: ws}]}]
pools:
  ws: {connect_timeout: 1s, connect_attempts: 2, passive_fall: 1, passive_cooldown: 1m, backends: [{address: %q}, {address: %q}]}
`, e.backend[0], e.backend[1]))
	log := zaptest.NewLogger(t)
	p, err := balancer.NewPool(*cfg.Pools["ws"], nil, balancer.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	e.pools = map[string]*balancer.Pool{"ws": p}
	var m *Metrics
	e.srv = l4.NewServer(l4.Options{Log: log, OnDone: func(r *l4.Record) { m.ConnectionDone(r) }})
	src := Sources{
		Listeners: e.srv.Listeners, Connections: e.srv.Connections,
		Runtime: e.srv.Runtime,
		Ready:   func() error { return e.ready },
	}
	m = NewMetrics(src)
	rt, err := l4.NewRuntime(cfg, e.pools, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Apply(rt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(ctx)
	})
	e.proxy = e.srv.Addr("edge").String()
	e.admin, err = NewServer(config.Admin{Listen: "127.0.0.1:0"}, src, m, log)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(e.admin)
	}
	if err := e.admin.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.admin.Shutdown(context.Background()) })
	e.base = "http://" + e.admin.Addr().String()
	return e
}

// conversation opens a connection and sends n lines of 9 bytes ("line-NNN\n").
func (e *env) conversation(t *testing.T, n int) (net.Conn, string) {
	t.Helper()
	c, err := net.Dial("tcp", e.proxy)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	var who string
	for i := range n {
		fmt.Fprintf(c, "line-%03d\n", i)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		reply, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		who = strings.Fields(reply)[0]
	}
	return c, who
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value sums the samples of a family whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	total := 0.0
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

func TestMetricsMatchTraffic(t *testing.T) {
	e := start(t)
	for range 5 {
		c, _ := e.conversation(t, 3) // 27 bytes each way
		c.Close()
	}
	held, who := e.conversation(t, 2)
	defer held.Close()
	// Live byte counts are bumped just after the relay's write returns, so
	// a client can read its echo a moment before the counter says so; and
	// a scrape collects the counters and the open connections apart, so
	// one can see a connection's end counted while it is still listed as
	// open. Poll until every figure is in (or the deadline passes and the
	// checks below say which one is off).
	deadline := time.Now().Add(3 * time.Second)
	var fams map[string]*dto.MetricFamily
	for time.Now().Before(deadline) {
		fams = scrape(t, e.base)
		if value(fams, "l4edge_connections_total", map[string]string{"result": "client_closed"}) == 5 &&
			value(fams, "l4edge_bytes_total", map[string]string{"pool": "ws", "direction": "to_backend"}) == 5*27+18 &&
			value(fams, "l4edge_bytes_total", map[string]string{"pool": "ws", "direction": "to_client"}) == 5*(27+3*2)+2*(9+2) &&
			value(fams, "l4edge_connections_active", map[string]string{"route": "all"}) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := value(fams, "l4edge_connections_total", map[string]string{"listener": "edge", "route": "all", "result": "client_closed"}); got != 5 {
		t.Fatalf("connections_total %v, want 5", got)
	}
	// 5 finished x 27 bytes to the backend, plus the held one's 18 while open.
	if got := value(fams, "l4edge_bytes_total", map[string]string{"pool": "ws", "direction": "to_backend"}); got != 5*27+18 {
		t.Fatalf("bytes to backend %v, want %d", got, 5*27+18)
	}
	if got := value(fams, "l4edge_bytes_total", map[string]string{"pool": "ws", "direction": "to_client"}); got != 5*(27+3*2)+2*(9+2) {
		t.Fatalf("bytes to client %v, want %d", got, 5*(27+3*2)+2*(9+2))
	}
	for _, b := range e.backend {
		if value(fams, "l4edge_backend_up", map[string]string{"pool": "ws", "backend": b}) != 1 {
			t.Fatalf("backend %s not up", b)
		}
	}
	if got := value(fams, "l4edge_connections_active", map[string]string{"route": "all"}); got != 1 {
		t.Fatalf("connections_active %v, want 1 (the held connection)\n%s", got, fmt.Sprint(fams["l4edge_connections_active"]))
	}
	if fams["go_goroutines"] == nil || fams["process_open_fds"] == nil {
		t.Fatal("Go or process collectors missing")
	}
	_ = who
}

func getStatus(t *testing.T, base string) map[string]any {
	t.Helper()
	resp, err := http.Get(base + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func post(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Drain: open connections continue, new ones avoid the drained backend,
// /status shows it; enable returns it to rotation.
func TestDrainAndStatus(t *testing.T) {
	e := start(t)
	held, who := e.conversation(t, 1)
	defer held.Close()
	drained := e.backend[0]
	if who != "a" {
		drained = e.backend[1]
	}
	code, body := post(t, e.base+"/pools/ws/backends/"+strings.Replace(drained, ":", "%3A", 1)+"/drain")
	if code != 200 || !strings.Contains(body, `"state": "draining"`) {
		t.Fatalf("drain: %d %s", code, body)
	}
	for range 6 {
		c, w := e.conversation(t, 1)
		c.Close()
		if w == who {
			t.Fatal("a new connection went to the drained backend")
		}
	}
	fmt.Fprintf(held, "still\n")
	if reply, err := bufio.NewReader(held).ReadString('\n'); err != nil || reply != who+" still\n" {
		t.Fatalf("held connection to the drained backend: %q %v", reply, err)
	}
	// The short connections closed client-side may still be finishing.
	st := getStatus(t, e.base)
	routeActive := func(st map[string]any) float64 {
		return st["listeners"].([]any)[0].(map[string]any)["routes"].([]any)[0].(map[string]any)["active"].(float64)
	}
	for deadline := time.Now().Add(3 * time.Second); routeActive(st) != 1 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		st = getStatus(t, e.base)
	}
	backends := st["pools"].([]any)[0].(map[string]any)["backends"].([]any)
	states := map[string]any{}
	for _, b := range backends {
		bm := b.(map[string]any)
		states[bm["address"].(string)] = bm["state"]
		if bm["address"] == drained && bm["active"].(float64) != 1 {
			t.Fatalf("drained backend active %v, want the 1 held connection", bm["active"])
		}
		if bm["address"] == drained && bm["bytes_to_backend"].(float64) < 15 { // "line-000\n" + "still\n", at least
			t.Fatalf("drained backend bytes %v, want the held connection's", bm["bytes_to_backend"])
		}
	}
	if states[drained] != "draining" {
		t.Fatalf("status states %v", states)
	}
	l := st["listeners"].([]any)[0].(map[string]any)
	if l["accepted"].(float64) != 7 || l["routes"].([]any)[0].(map[string]any)["active"].(float64) != 1 {
		t.Fatalf("listener status %v", l)
	}
	if code, _ := post(t, e.base+"/pools/ws/backends/"+drained+"/enable"); code != 200 {
		t.Fatalf("enable: %d", code)
	}
	if code, body := post(t, e.base+"/pools/nope/backends/"+drained+"/drain"); code != 404 || !strings.Contains(body, `unknown pool \"nope\"`) {
		t.Fatalf("unknown pool: %d %s", code, body)
	}
	if code, _ := post(t, e.base+"/pools/ws/backends/127.0.0.1:1/drain"); code != 404 {
		t.Fatalf("unknown backend: %d", code)
	}
	if resp, _ := http.Get(e.base + "/pools/ws/backends/" + drained + "/drain"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET on drain: %d", resp.StatusCode)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := start(t)
	if resp, _ := http.Get(e.base + "/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	if resp, _ := http.Get(e.base + "/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	e.ready = errors.New("listeners not bound yet")
	resp, _ := http.Get(e.base + "/readyz")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), "not bound") {
		t.Fatalf("readyz while not ready: %d %s", resp.StatusCode, b)
	}
}
