package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/l4edge/l4edge/admin/browsertest"
	"github.com/l4edge/l4edge/tlsterm"
)

// postWith posts to url with the given Origin and Host ("" leaves them out).
func postWith(t *testing.T, url, origin, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A browser sends its page's Origin: a foreign one is refused with a 403
// that says why, for drain, enable and reload; the listener's own Origin and
// no Origin at all (curl) are served.
func TestStateChangesRefuseForeignOrigin(t *testing.T) {
	e := start(t)
	addr := e.admin.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	drain := e.base + "/pools/ws/backends/" + e.backend[0] + "/drain"
	for _, path := range []string{drain, e.base + "/pools/ws/backends/" + e.backend[0] + "/enable", e.base + "/reload"} {
		code, body := postWith(t, path, "http://evil.example", "")
		if code != http.StatusForbidden || !strings.Contains(body, `Origin \"http://evil.example\" is not this admin listener's own (http://`+addr+`)`) {
			t.Fatalf("POST %s from http://evil.example: %d %s", path, code, body)
		}
	}
	foreign := []struct{ origin, host string }{
		{"null", ""}, // sandboxed frames and file: pages
		{"https://" + addr, ""},
		{"http://127.0.0.1:1", ""},
		{"http://evil.example:" + port, "evil.example:" + port}, // a DNS name rebound to 127.0.0.1
		{"http://localhost:" + port, ""},                        // Host says 127.0.0.1: not the page's own
	}
	for _, f := range foreign {
		if code, body := postWith(t, drain, f.origin, f.host); code != http.StatusForbidden {
			t.Fatalf("Origin %q Host %q: %d %s, want 403", f.origin, f.host, code, body)
		}
	}
	if st := getStatus(t, e.base); strings.Contains(fmt.Sprint(st), "draining") {
		t.Fatal("a refused request drained a backend")
	}
	own := []struct{ origin, host string }{{"", ""}, {"http://" + addr, ""}, {"http://localhost:" + port, "localhost:" + port}}
	for _, o := range own {
		if code, body := postWith(t, drain, o.origin, o.host); code != http.StatusOK || !strings.Contains(body, "draining") {
			t.Fatalf("Origin %q Host %q: %d %s, want 200", o.origin, o.host, code, body)
		}
	}
}

// GET / is the page itself: HTML, nothing loaded from elsewhere, not frameable.
func TestPageHeaders(t *testing.T) {
	e := start(t)
	resp, err := http.Get(e.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GET /: %d %v", resp.StatusCode, h)
	}
	for _, external := range []string{"src=\"http", "href=\"http", "@import", "url(http"} {
		if strings.Contains(string(body), external) {
			t.Fatalf("the page loads %s from elsewhere", external)
		}
	}
	if resp, _ := http.Get(e.base + "/nothing"); resp.StatusCode != 404 {
		t.Fatalf("GET /nothing: %d", resp.StatusCode)
	}
}

// historyDoc reads GET /status/history.
func historyDoc(t *testing.T, base string) HistoryDoc {
	t.Helper()
	resp, err := http.Get(base + "/status/history")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d HistoryDoc
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// With a sample every 2 ms, 10,000 connections fill the ring many times
// over: the history holds historySize samples, and so does every chart on
// the page, drawn by a real browser.
func TestChartsHoldRingSizeAfter10000Connections(t *testing.T) {
	ctx := browsertest.Start(t, 2*time.Minute)
	e := startWith(t, func(s *Server) { s.history.every = 2 * time.Millisecond })
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2500 {
				c, err := net.DialTimeout("tcp", e.proxy, 2*time.Second)
				if err != nil {
					errs <- err
					return
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "w%d-%d\n", w, i)
				_, err = c.Read(make([]byte, 64))
				c.Close()
				if err != nil {
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
	d := historyDoc(t, e.base)
	if d.Size != historySize || len(d.Times) != historySize || len(d.Listeners["edge"].Open) != historySize {
		t.Fatalf("history: size %d, %d times, %d points for edge; want %d", d.Size, len(d.Times), len(d.Listeners["edge"].Open), historySize)
	}
	// Every chart has been drawn from a full ring once the page has a history event.
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('svg.spark').length == 9`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatal(err)
	}
	counts, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](
		`[...document.querySelectorAll('svg.spark polyline')].map(p => p.getAttribute('points').trim().split(/\s+/).filter(Boolean).length)`))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range counts {
		if n > historySize || n < historySize-2 { // the first sample of a rate has no point
			t.Fatalf("chart points %v, want at most %d (and the ring full)", counts, historySize)
		}
	}
}

// The event stream outlives the server's read and write timeouts,
// sends a status event every second and a history event per sample, and
// ends when the server shuts down rather than holding Shutdown up.
func TestEventStream(t *testing.T) {
	e := startWith(t, func(s *Server) {
		s.http.ReadTimeout, s.http.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
		s.history.every = 400 * time.Millisecond
	})
	resp, err := http.Get(e.base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan string, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- name
			}
		}
	}()
	count := map[string]int{}
	for deadline := time.After(2500 * time.Millisecond); ; {
		select {
		case name, ok := <-events:
			if !ok {
				t.Fatalf("stream ended after %v", count)
			}
			count[name]++
			continue
		case <-deadline:
		}
		break
	}
	if count["status"] < 2 || count["history"] < 2 {
		t.Fatalf("in 2.5 s: %v; want a status every second and a history per sample", count)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.admin.Shutdown(ctx); err != nil || time.Since(start) > time.Second {
		t.Fatalf("Shutdown with a stream open: %v after %s", err, time.Since(start))
	}
	for range events {
	}
}

// Certificates show their days left, highlighted under 14 days and when expired.
func TestPageCertificates(t *testing.T) {
	ctx := browsertest.Start(t, time.Minute)
	now := time.Now()
	e := startWith(t, func(s *Server) {
		s.src.Certificates = func() []tlsterm.CertInfo {
			return []tlsterm.CertInfo{
				{Names: []string{"soon.test"}, NotAfter: now.Add(5*24*time.Hour + time.Hour), Issuer: "CN=Test CA"},
				{Names: []string{"fine.test", "www.fine.test"}, NotAfter: now.Add(60*24*time.Hour + time.Hour), Issuer: "CN=Test CA"},
				{Names: []string{"gone.test"}, NotAfter: now.Add(-time.Hour), Issuer: "CN=Old CA"},
			}
		}
	})
	type row struct{ Cert, Class, Days string }
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('tr[data-cert]').length == 3`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]row](`[...document.querySelectorAll('tr[data-cert]')].map(r =>
		({cert: r.dataset.cert, class: r.className, days: r.lastElementChild.textContent}))`))
	if err != nil {
		t.Fatal(err)
	}
	want := []row{{"soon.test", "expiring", "5"}, {"fine.test,www.fine.test", "", "60"}, {"gone.test", "expired", "expired"}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("certificate rows %v, want %v", rows, want)
	}
}
