package admin

import (
	"strings"
	"testing"
)

// scope takes local (the default) or cluster; anything else, or cluster
// without shared storage, is a 400 that changes nothing.
func TestDrainScope(t *testing.T) {
	e := start(t)
	be := e.backend[0]
	for _, tc := range []struct {
		query string
		code  int
		want  string
	}{
		{"?scope=everywhere", 400, `scope \"everywhere\" is not local or cluster`},
		{"?scope=cluster", 400, "scope cluster needs shared storage: set tls.storage.redis"},
		{"?scope=local", 200, `"state": "draining"`},
	} {
		code, body := post(t, e.base+"/pools/ws/backends/"+be+"/drain"+tc.query)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Fatalf("%s: %d %s", tc.query, code, body)
		}
		if tc.code == 400 && e.pools["ws"].Backend(be).State().String() == "draining" {
			t.Fatalf("%s drained the backend", tc.query)
		}
	}
	if st := getStatus(t, e.base); st["storage"] != nil || st["cluster"] != nil {
		t.Fatalf("storage/cluster sections without sources: %v %v", st["storage"], st["cluster"])
	}
}
