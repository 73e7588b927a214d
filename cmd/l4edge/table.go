//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ANSI colours of the terminal output.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiPurple = "\x1b[35m"
)

// cell is one table cell; colour applies only on a terminal.
type cell struct {
	text, colour string
}

// table lays cells out in columns two spaces apart, padded by visible
// width (colour codes take no room), without trailing spaces.
type table struct {
	head []string
	rows [][]cell
}

func (t *table) add(cells ...cell) { t.rows = append(t.rows, cells) }

// plain makes uncoloured cells.
func plain(texts ...string) []cell {
	out := make([]cell, len(texts))
	for i, s := range texts {
		out[i] = cell{text: s}
	}
	return out
}

func (t *table) write(w io.Writer, colour bool) {
	widths := make([]int, len(t.head))
	all := append([][]cell{plain(t.head...)}, t.rows...)
	for _, r := range all {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	for n, r := range all {
		var b strings.Builder
		for i, c := range r {
			text := c.text
			if i < len(r)-1 {
				text += strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text)+2)
			}
			code := c.colour
			if n == 0 {
				code = ansiBold
			}
			if colour && code != "" {
				b.WriteString(code + strings.TrimRight(text, " ") + ansiReset + text[len(strings.TrimRight(text, " ")):])
			} else {
				b.WriteString(text)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// stateColour is a backend state's colour.
func stateColour(state string) string {
	switch state {
	case "healthy":
		return ansiGreen
	case "unhealthy":
		return ansiRed
	case "draining":
		return ansiPurple
	}
	return ""
}

// humanBytes formats a byte count in binary units.
func humanBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
