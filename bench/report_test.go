//go:build linux

package main

import (
	"errors"
	"strings"
	"testing"
)

func TestTableMediansAndRatios(t *testing.T) {
	s := scenario{name: "x", label: "X", metrics: []metric{
		{key: "rate", label: "ops/s", higher: true},
		{key: "cpu", label: "CPU", proxyOnly: true, prec: 1},
	}}
	r := newResults([]string{targetDirect, targetL4edge, targetHAProxy}, []scenario{s})
	r.add("x", targetDirect, outcome{values: map[string]float64{"rate": 400, "cpu": 0}}, nil)
	r.add("x", targetDirect, outcome{values: map[string]float64{"rate": 320, "cpu": 0}}, nil)
	r.add("x", targetL4edge, outcome{values: map[string]float64{"rate": 100, "cpu": 3}}, nil)
	r.add("x", targetL4edge, outcome{values: map[string]float64{"rate": 300, "cpu": 1}}, nil)
	r.add("x", targetL4edge, outcome{values: map[string]float64{"rate": 200, "cpu": 2}}, nil)
	r.add("x", targetHAProxy, outcome{}, errors.New("boom"))

	if v, ok := r.median("x", targetL4edge, "rate"); !ok || v != 200 {
		t.Errorf("median of 3 = %v %v, want 200", v, ok)
	}
	if v, ok := r.median("x", targetDirect, "rate"); !ok || v != 360 {
		t.Errorf("median of 2 = %v %v, want 360", v, ok)
	}
	table := r.table()
	for _, want := range []string{
		"| scenario | metric | direct | l4edge | haproxy | l4edge/haproxy | l4edge/direct | haproxy/direct |",
		"| X | ops/s ↑ | 360 | 200 | ERR | — | 0.56 | — |",
		"| X | CPU ↓ | 0.0 | 2.0 | ERR | — | — | — |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if r.failures() != 1 {
		t.Errorf("failures = %d, want 1", r.failures())
	}
	notes := strings.Join(r.notes(), "\n")
	if !strings.Contains(notes, "x on haproxy: run failed: boom") {
		t.Errorf("notes lack the failed run:\n%s", notes)
	}
	if !strings.Contains(notes, "x on l4edge: ops/s varied from 100 to 300") {
		t.Errorf("notes lack the spread of l4edge's runs:\n%s", notes)
	}
	if strings.Contains(notes, "x on direct: ops/s varied") {
		t.Errorf("a 1.25 spread is flagged:\n%s", notes)
	}
}
