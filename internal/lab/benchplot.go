package lab

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WriteBenchPlot draws the time to all provisioned and to all answering
// ping against the server count, as SVG or PNG by the file's extension.
func WriteBenchPlot(path string, results []BenchResult) error {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".svg" && ext != ".png" {
		return fmt.Errorf("plot %s: the file must end in .svg or .png", path)
	}
	if len(results) == 0 {
		return fmt.Errorf("plot %s: no results to draw", path)
	}
	sorted := slices.Clone(results)
	slices.SortFunc(sorted, func(a, b BenchResult) int { return a.Servers - b.Servers })
	// a figure of 0 was not measured (the lab failed before it)
	series := func(f func(BenchResult) float64) plotter.XYs {
		var xys plotter.XYs
		for _, r := range sorted {
			if y := f(r); y > 0 {
				xys = append(xys, plotter.XY{X: float64(r.Servers), Y: y})
			}
		}
		return xys
	}
	var lines []any
	for _, l := range []struct {
		name string
		f    func(BenchResult) float64
	}{
		{"all provisioned", func(r BenchResult) float64 { return r.Provisioned }},
		{"all answer choria ping", func(r BenchResult) float64 { return r.Ping }},
	} {
		if xys := series(l.f); len(xys) > 0 {
			lines = append(lines, l.name, xys)
		}
	}

	p := plot.New()
	p.Title.Text = "choria-lab bench: bring-up time against fleet size"
	p.X.Label.Text = "servers"
	p.Y.Label.Text = "seconds from the start of choria-lab up"
	p.X.Min, p.Y.Min = 0, 0
	p.Add(plotter.NewGrid())
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	p.Legend.Top, p.Legend.Left = true, true
	if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}
