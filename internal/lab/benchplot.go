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
	series := func(f func(BenchResult) float64) plotter.XYs {
		xys := make(plotter.XYs, len(sorted))
		for i, r := range sorted {
			xys[i] = plotter.XY{X: float64(r.Servers), Y: f(r)}
		}
		return xys
	}

	p := plot.New()
	p.Title.Text = "choria-lab bench: bring-up time against fleet size"
	p.X.Label.Text = "servers"
	p.Y.Label.Text = "seconds from the start of choria-lab up"
	p.X.Min, p.Y.Min = 0, 0
	p.Add(plotter.NewGrid())
	if err := plotutil.AddLinePoints(p,
		"all provisioned", series(func(r BenchResult) float64 { return r.Provisioned }),
		"all answer choria ping", series(func(r BenchResult) float64 { return r.Ping }),
	); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	p.Legend.Top, p.Legend.Left = true, true
	if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}
