//go:build linux

package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/l4edge/l4edge/admin"
	"github.com/l4edge/l4edge/internal/testpeer"
)

// getJSON decodes GET url into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// cluster3 starts three instances on 127.0.0.1-3 at tlsPort with admin
// listeners, all on the same configuration but their addresses.
func cluster3(t *testing.T, p *pebble, tlsPort int, redisAddr string, names []string, onDemand string) (addrs, admins []string, procs []*proc) {
	t.Helper()
	for i, port := range testpeer.FreePorts(t, 3) {
		addr := fmt.Sprintf("127.0.0.%d:%d", i+1, tlsPort)
		adm := fmt.Sprintf("127.0.0.1:%d", port)
		addrs, admins = append(addrs, addr), append(admins, adm)
		cfg := writeConfig(t, redisConfig(p, addr, adm, redisAddr, "", names, onDemand))
		procs = append(procs, startProc(t, filepath.Join(binDir, "l4edge"), "run", "-config", cfg))
	}
	for _, a := range addrs {
		waitListening(t, a, 10*time.Second)
	}
	return addrs, admins, procs
}

// Redis stopped mid-run: every instance keeps serving every name and logs
// storage unavailable once; Redis back (empty): a new on-demand name is
// issued and storage recovered is logged.
func TestClusterRedisDown(t *testing.T) {
	p, tlsPort, srv := pebbleAndRedis(t)
	names := clusterNames(5)
	addrs, admins, procs := cluster3(t, p, tlsPort, srv.Addr, names, `"*.od.test"`)
	waitAll(t, p, addrs, names, 60*time.Second)

	srv.Stop()
	for _, pr := range procs {
		pr.waitLog(20*time.Second, "storage unavailable")
	}
	var st admin.StatusDoc
	getJSON(t, "http://"+admins[0]+"/status", &st)
	if st.Storage == nil || st.Storage.Up {
		t.Fatal("/status shows storage up while Redis is stopped")
	}
	failures := 0
	for _, a := range addrs {
		for i := range 100 {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", a,
				&tls.Config{ServerName: names[i%len(names)], RootCAs: p.IssuerRoots})
			if err != nil {
				failures++
				t.Logf("%s %s: %v", a, names[i%len(names)], err)
				continue
			}
			c.Close()
		}
	}
	t.Logf("handshake failures while Redis is down: %d of %d", failures, 100*len(addrs))
	if failures > 0 {
		t.Fatalf("%d handshakes failed while Redis was down", failures)
	}

	// A new name while Redis is down cannot be ordered (no lock): it fails
	// fast and is issued once Redis is back.
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 15 * time.Second}, "tcp", addrs[0],
		&tls.Config{ServerName: "during.od.test", RootCAs: p.IssuerRoots}); err == nil {
		c.Close()
		t.Fatal("a new on-demand name was issued while Redis was down")
	}

	back := time.Now()
	srv.Restart()
	for _, pr := range procs {
		pr.waitLog(20*time.Second, "storage recovered")
	}
	waitCertificate(t, p, addrs[0], "fresh.od.test", 30*time.Second)
	t.Logf("Redis back to a new on-demand certificate: %s", time.Since(back).Round(time.Millisecond))
	waitCertificate(t, p, addrs[0], "during.od.test", 30*time.Second)
	// Redis came back empty: the members write back the certificates they
	// hold within a heartbeat, and none is ordered again.
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range names {
		for srv.Command("EXISTS", "l4edge:v:"+certKey(t, p, n)) != ":1" {
			if time.Now().After(deadline) {
				t.Fatalf("%s was not written back to the emptied Redis", n)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The other members serve the on-demand names from storage, without new orders.
	for _, a := range addrs[1:] {
		waitCertificate(t, p, a, "fresh.od.test", 10*time.Second)
		waitCertificate(t, p, a, "during.od.test", 10*time.Second)
	}
	checkOrderedOnce(t, p, append(slices.Clone(names), "during.od.test", "fresh.od.test"))
	for i, pr := range procs {
		if n := pr.countLog("storage unavailable"); n != 1 {
			t.Errorf("instance %d logged storage unavailable %d times", i, n)
		}
	}
	getJSON(t, "http://"+admins[0]+"/status", &st)
	if st.Storage == nil || !st.Storage.Up {
		t.Fatal("/status shows storage down after Redis came back")
	}
	resp, err := http.Get("http://" + admins[0] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"l4edge_storage_up 1", `l4edge_storage_operations_total{op="store",result="ok"}`, `l4edge_storage_operations_total{op="store",result="error"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// certKey is certmagic's storage key of name's certificate from p.
func certKey(t *testing.T, p *pebble, name string) string {
	t.Helper()
	u, err := url.Parse(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	issuer := strings.ReplaceAll(u.Host, ":", "-") + strings.ReplaceAll(u.Path, "/", "-")
	return "certificates/" + issuer + "/" + name + "/" + name + ".crt"
}
