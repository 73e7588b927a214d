//go:build linux

package main

import (
	"bytes"
	"fmt"
	"image/color"
	"image/png"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// soakLine is one of the four sampled figures.
type soakLine struct {
	name, unit string
	color      color.RGBA
	value      func(soakSample) float64
}

// soakLines returns the figures charted and judged, in order (open
// connections last).
func soakLines() []soakLine {
	return []soakLine{
		{"goroutines", "", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, func(s soakSample) float64 { return s.Goroutines }},
		{"descriptors", "", color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, func(s soakSample) float64 { return s.FDs }},
		{"RSS", "MiB", color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, func(s soakSample) float64 { return s.RSSMiB }},
		{"open connections", "", color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, func(s soakSample) float64 { return s.Conns }},
	}
}

// writeChart draws the four lines over time, one panel each sharing the
// time axis, with a dashed vertical marker at each fault (red: backend
// killed, grey: reload), as a PNG at path, and checks that the file
// decodes as one.
func writeChart(path string, samples []soakSample, faults []soakEvent) error {
	lines := soakLines()
	plots := make([][]*plot.Plot, len(lines))
	for i, line := range lines {
		p, err := chartPanel(line, samples, faults)
		if err != nil {
			return err
		}
		if i == len(lines)-1 {
			p.X.Label.Text = "minutes since the soak began (dashed: red a backend SIGKILLed, grey a reload)"
		}
		plots[i] = []*plot.Plot{p}
	}
	img := vgimg.New(vg.Points(900), vg.Points(260*float64(len(lines))))
	tiles := draw.Tiles{Rows: len(lines), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(10), PadRight: vg.Points(16), PadY: vg.Points(14)}
	canvases := plot.Align(plots, tiles, draw.New(img))
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("encode chart: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	return checkPNG(path)
}

// chartPanel plots one line, from zero, with the fault markers.
func chartPanel(line soakLine, samples []soakSample, faults []soakEvent) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = line.name
	p.Y.Label.Text = line.unit
	p.Y.Min = 0
	pts := make(plotter.XYs, len(samples))
	top := 1.0
	for k, s := range samples {
		pts[k].X, pts[k].Y = s.At.Minutes(), line.value(s)
		top = max(top, pts[k].Y*1.05)
	}
	p.Add(plotter.NewGrid())
	for _, f := range faults {
		m, err := plotter.NewLine(plotter.XYs{{X: f.At.Minutes(), Y: 0}, {X: f.At.Minutes(), Y: top}})
		if err != nil {
			return nil, fmt.Errorf("chart marker: %w", err)
		}
		m.Color = color.NRGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xa0}
		if f.Kind == "kill" {
			m.Color = color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xc0}
		}
		m.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(m)
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", line.name, err)
	}
	l.Color, l.Width = line.color, vg.Points(1.5)
	p.Add(l)
	return p, nil
}

// checkPNG decodes the file at path as a PNG and checks it has an area.
func checkPNG(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	im, err := png.Decode(f)
	if err != nil {
		return fmt.Errorf("%s does not decode as PNG: %w", path, err)
	}
	if b := im.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		return fmt.Errorf("%s is only %dx%d pixels", path, b.Dx(), b.Dy())
	}
	return nil
}
