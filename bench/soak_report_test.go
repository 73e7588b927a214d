//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

// soakWith builds a result of n samples from f, with every driver counted.
func soakWith(n int, f func(i int) soakSample) *soakResult {
	p := defaultSoakParams(time.Duration(n) * 5 * time.Second)
	r := &soakResult{p: p, ledger: newSoakLedger()}
	for i := range n {
		s := f(i)
		s.At = time.Duration(i) * p.sampleEvery
		r.samples = append(r.samples, s)
	}
	r.ledger.add("held-term opened", int64(p.heldTerm))
	r.ledger.add("held-pass opened", int64(p.heldPass))
	for _, k := range []string{"held-term messages", "held-pass messages", "churn-plain ok", "churn-tls ok", "slowloris closed", "reloads", "kills", "restarts"} {
		r.ledger.add(k, 1)
	}
	return r
}

func flat(int) soakSample { return soakSample{Goroutines: 50, FDs: 650, RSSMiB: 22, Conns: 330} }

func TestSoakJudge(t *testing.T) {
	cases := []struct {
		name string
		r    *soakResult
		want string // "" passes; else a substring of a problem
	}{
		{"flat", soakWith(24, flat), ""},
		{"goroutines leak", soakWith(24, func(i int) soakSample { s := flat(i); s.Goroutines += float64(3 * i); return s }), "goroutines grows"},
		{"RSS creeps 15%", soakWith(24, func(i int) soakSample {
			s := flat(i)
			if i >= 18 {
				s.RSSMiB *= 1.15
			}
			return s
		}), "RSS grows"},
		{"descriptors follow the connections", soakWith(24, func(i int) soakSample {
			s := flat(i)
			if i >= 18 {
				s.Conns *= 1.3
				s.FDs *= 1.3
			}
			return s
		}), "open connections grows"},
		{"too few samples", soakWith(6, flat), "only 6 samples"},
	}
	cut := soakWith(24, flat)
	cut.ledger.add("held-pass cut", 2)
	cases = append(cases, struct {
		name string
		r    *soakResult
		want string
	}{"a held connection cut", cut, "2 held-pass connections were cut"})
	unexplained := soakWith(24, flat)
	unexplained.ledger.unexplained("churn-tls", errString("read echo: EOF"))
	cases = append(cases, struct {
		name string
		r    *soakResult
		want string
	}{"an unexplained error", unexplained, "1 errors no injected fault explains; the first: "})
	for _, tc := range cases {
		v := tc.r.judge()
		all := strings.Join(v.problems, "\n")
		switch {
		case tc.want == "" && len(v.problems) > 0:
			t.Errorf("%s: want a pass, got problems:\n%s", tc.name, all)
		case tc.want != "" && !strings.Contains(all, tc.want):
			t.Errorf("%s: want a problem containing %q, got:\n%s", tc.name, tc.want, all)
		}
		if tc.name == "descriptors follow the connections" && strings.Contains(all, "descriptors grows") {
			t.Errorf("descriptors that rise with the open connections must not count as growth: %s", all)
		}
	}
}

// errString is an error with a fixed message.
type errString string

func (e errString) Error() string { return string(e) }
