//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/l4edge/l4edge/admin"
	"github.com/l4edge/l4edge/admin/browsertest"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// backendState reads one backend's state from GET /status.
func backendState(t *testing.T, adminAddr, pool, backend string) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.StatusDoc
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			if p.Name == pool && b.Address == backend {
				return b.State
			}
		}
	}
	t.Fatalf("no backend %s in pool %s of /status", backend, pool)
	return ""
}

// pageState is a backend's state as the open page shows it.
func pageState(pool, backend string) string {
	return fmt.Sprintf(`(document.querySelector('tr[data-pool=%q][data-backend=%q] .state') || {}).textContent`, pool, backend)
}

// The status page of a real l4edge in a real Chromium: every listener,
// pool and backend is on it; a killed backend turns unhealthy on the open
// page within 3 s; the page's drain button drains (and its Origin is
// accepted); another site's page cannot drain; a screenshot is a real image.
func TestStatusPageInBrowser(t *testing.T) {
	ctx := browsertest.Start(t, 2*time.Minute)
	ports := testpeer.FreePorts(t, 6)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	backends := []string{addr(0), addr(1), addr(2)}
	procs := make([]*proc, 3)
	for i, b := range backends {
		procs[i] = startProc(t, filepath.Join(binDir, "wsecho"), "-listen", b, "-name", fmt.Sprintf("b%d", i))
		waitListening(t, b, 10*time.Second)
	}
	adminAddr := addr(5)
	cfg := fmt.Sprintf(`log: {level: info, format: json}
admin: {listen: %s}
listeners:
  - name: web
    listen: %s
    routes: [{name: ws, pool: ws}]
  - name: api
    listen: %s
    routes: [{name: api-secure, match: {sni: [api.test]}, tls: {mode: terminate, cert: self_signed}, pool: api}]
pools:
  ws:
    backends: [{address: %s}, {address: %s}]
    health: {check: websocket, path: /, interval: 200ms, timeout: 300ms, rise: 2, fall: 2}
  api:
    backends: [{address: %s}]
    health: {check: tcp, interval: 200ms, timeout: 300ms, rise: 2, fall: 2}
`, adminAddr, addr(3), addr(4), backends[0], backends[1], backends[2])
	srv := startL4edge(t, cfg, addr(3))
	waitListening(t, adminAddr, 10*time.Second)
	base := "http://" + adminAddr

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('tr[data-backend]').length == 3`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the page shows no backends: %v", err)
	}
	type shown struct {
		Listeners, Pools, Routes []string
		Backends                 map[string]string
		Certs                    []string
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[shown](`({
		listeners: [...document.querySelectorAll('[data-listener]')].map(e => e.dataset.listener),
		pools: [...document.querySelectorAll('div[data-pool]')].map(e => e.dataset.pool),
		routes: [...document.querySelectorAll('tr[data-route]')].map(e => e.dataset.route),
		backends: Object.fromEntries([...document.querySelectorAll('tr[data-backend]')].map(e => [e.dataset.pool + "/" + e.dataset.backend, e.querySelector('.state').textContent])),
		certs: [...document.querySelectorAll('tr[data-cert]')].map(e => e.dataset.cert),
	})`))
	if err != nil {
		t.Fatal(err)
	}
	want := shown{Listeners: []string{"web", "api"}, Pools: []string{"api", "ws"}, Routes: []string{"ws", "api-secure"},
		Backends: map[string]string{"ws/" + backends[0]: "healthy", "ws/" + backends[1]: "healthy", "api/" + backends[2]: "healthy"},
		Certs:    []string{"api.test,localhost"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the page shows\n%+v\nwant\n%+v", got, want)
	}

	// Kill a backend: the open page (no reload) says unhealthy within 3 s.
	procs[1].signal(syscall.SIGKILL)
	killed := time.Now()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](pageState("ws", backends[1])+` == "unhealthy"`,
		chromedp.WithPollingTimeout(3*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("killed backend not unhealthy on the page within 3 s: %v", err)
	}
	t.Logf("killed backend shown unhealthy after %s", time.Since(killed).Round(time.Millisecond))

	// The api pool's only backend dies: the pool is in panic, on the page and in l4edge status.
	procs[2].signal(syscall.SIGKILL)
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`document.querySelector('div[data-pool="api"] .panic') !== null`,
		chromedp.WithPollingTimeout(3*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("pool api not shown in panic within 3 s: %v", err)
	}
	if out, errOut, _ := cli(t, "status", "-admin", adminAddr); !regexp.MustCompile(`(?m)^api \(panic\) +` + regexp.QuoteMeta(backends[2]) + ` +unhealthy `).MatchString(out) {
		t.Fatalf("l4edge status does not show the panic:\n%s%s", out, errOut)
	}

	// Another site's page POSTs to the drain endpoint: refused.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><script>fetch(%q, {method: "POST", mode: "no-cors"}).finally(() => document.title = "sent")</script>`,
			base+"/pools/ws/backends/"+backends[0]+"/drain")
	}))
	defer evil.Close()
	evilTab, cancelEvil := chromedp.NewContext(ctx)
	defer cancelEvil()
	if err := chromedp.Do(evilTab, chromedp.Navigate(evil.URL),
		chromedp.Poll[chromedp.Void](`document.title == "sent"`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatal(err)
	}
	srv.waitLog(5*time.Second, "admin request refused: foreign Origin", evil.URL)
	if s := backendState(t, adminAddr, "ws", backends[0]); s != "healthy" {
		t.Fatalf("another site's page changed the backend to %s", s)
	}

	// The page's own drain button: /status and the page say draining.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-pool="ws"][data-backend=%q] button[data-action="drain"]`, backends[0]))),
		chromedp.Poll[chromedp.Void](pageState("ws", backends[0])+` == "draining"`, chromedp.WithPollingTimeout(3*time.Second))); err != nil {
		t.Fatalf("drain button: %v", err)
	}
	if s := backendState(t, adminAddr, "ws", backends[0]); s != "draining" {
		t.Fatalf("after the drain button /status says %s", s)
	}
	srv.waitLog(5*time.Second, "backend drain changed", backends[0], `"draining":true`)

	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	checkScreenshot(t, shot, browsertest.Width, browsertest.Height)

	// On a phone's width the page does not overflow (wide tables scroll in
	// their card) and every backend's button is on screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Sleep(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= 390 &&
		[...document.querySelectorAll('tr[data-backend] button')].every(b => b.getBoundingClientRect().right <= 390)`))
	if err != nil || !fits {
		t.Fatalf("the page at 390 px wide: fits %v, err %v", fits, err)
	}
}

// checkScreenshot decodes a PNG of w x h that is not one colour: text and
// lines in several colours were drawn.
func checkScreenshot(t *testing.T, shot []byte, w, h int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b != image.Rect(0, 0, w, h) {
		t.Fatalf("screenshot %v, want %dx%d", b, w, h)
	}
	colours := map[[3]uint32]int{}
	for y := 0; y < h; y += 2 {
		for x := 0; x < w; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}]++
		}
	}
	var top int
	for _, n := range colours {
		top = max(top, n)
	}
	if len(colours) < 16 || top > w*h/4*98/100 {
		t.Fatalf("screenshot looks blank: %d colours, the commonest on %d of %d pixels", len(colours), top, w*h/4)
	}
	t.Logf("screenshot %dx%d, %d bytes, %d colours", w, h, len(shot), len(colours))
}
