//go:build linux

package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// On a terminal, states are coloured and the columns still line up: the
// coloured output without its escape codes is the plain output.
func TestTableColour(t *testing.T) {
	tb := &table{head: []string{"BACKEND", "STATE", "ACTIVE"}}
	tb.add(cell{text: "10.0.0.1:80"}, cell{text: "healthy", colour: stateColour("healthy")}, cell{text: "3"})
	tb.add(cell{text: "10.0.0.2:80"}, cell{text: "unhealthy", colour: stateColour("unhealthy")}, cell{text: "0"})
	var plainOut, colourOut bytes.Buffer
	tb.write(&plainOut, false)
	tb.write(&colourOut, true)
	want := "BACKEND      STATE      ACTIVE\n10.0.0.1:80  healthy    3\n10.0.0.2:80  unhealthy  0\n"
	if plainOut.String() != want {
		t.Fatalf("plain:\n%q\nwant\n%q", plainOut.String(), want)
	}
	if !strings.Contains(colourOut.String(), ansiGreen+"healthy"+ansiReset) || !strings.Contains(colourOut.String(), ansiRed+"unhealthy"+ansiReset) {
		t.Fatalf("no colour on a terminal: %q", colourOut.String())
	}
	if stripped := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(colourOut.String(), ""); stripped != want {
		t.Fatalf("coloured output without escapes:\n%q\nwant\n%q", stripped, want)
	}
}
