package lab

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var sampleResults = []BenchResult{
	{Servers: 50, Provisioned: 6.7, Ping: 11.3, CPUPerServer: 0.6, FleetCPUPerServer: 1.2, IdleCPUPerServer: 0.001, BrokerRecovery: 2.9, PSS: map[string]uint64{"server": 17 * 1024}, PeakRSS: map[string]uint64{"broker": 70 * 1024}},
	{Servers: 10, Provisioned: 2.5, Ping: 7.0, CPUPerServer: 0.7, PeakRSS: map[string]uint64{}},
}

func TestBenchJSONHasEveryFigureInOrder(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteBenchJSON(&b, sampleResults))
	var back []map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	require.Len(t, back, 2)
	assert.EqualValues(t, 10, back[0]["servers"], "sorted by server count")
	assert.EqualValues(t, 11.3, back[1]["all_answer_ping_s"])
	assert.EqualValues(t, 0.6, back[1]["cpu_s_per_server"])
	assert.EqualValues(t, 1.2, back[1]["fleet_cpu_s_per_server"])
	assert.EqualValues(t, 2.9, back[1]["broker_kill_to_answering_s"])
	assert.EqualValues(t, 17*1024, back[1]["pss_kib"].(map[string]any)["server"])
}

func TestBenchTable(t *testing.T) {
	var b strings.Builder
	WriteBench(&b, sampleResults)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], "CPU-s/server  fleet CPU-s/server")
	assert.Regexp(t, `^\s*50\s.*\s11\.3\s.*\s0\.60\s+1\.20\s+0\.100\s+2\.9\s+70\.0\s+-\s+17\.0\s`, lines[1], "the provisioner's peak RSS was not measured")
	assert.Regexp(t, `^\s*50\s+-\s+6\.7\s+-\s+11\.3\s`, lines[1], "a figure not measured is -, not 0.0")
}

func TestBenchPlot(t *testing.T) {
	dir := t.TempDir()
	svg := filepath.Join(dir, "bench.svg")
	require.NoError(t, WriteBenchPlot(svg, sampleResults))
	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	assert.Contains(t, string(b), "<svg")
	assert.Contains(t, string(b), "all answer choria ping")

	png := filepath.Join(dir, "bench.png")
	require.NoError(t, WriteBenchPlot(png, sampleResults))
	b, err = os.ReadFile(png)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(b, []byte("\x89PNG")))

	assert.ErrorContains(t, WriteBenchPlot(filepath.Join(dir, "bench.pdf"), sampleResults), "must end in .svg or .png")
	assert.ErrorContains(t, WriteBenchPlot(svg, nil), "no results")
}

// A lab that came up but failed a later measurement is still drawn, by the
// figures it has: its time to provisioned, not a ping time of 0.
func TestBenchPlotLeavesOutUnmeasuredFigures(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "bench.svg")
	failed := BenchResult{Servers: 500, Provisioned: 580, Error: "no single ping reached all 500"}
	require.NoError(t, WriteBenchPlot(svg, []BenchResult{failed}))
	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	assert.Contains(t, string(b), "all provisioned")
	assert.NotContains(t, string(b), "all answer choria ping", "no ping was measured")

	var j bytes.Buffer
	require.NoError(t, WriteBenchJSON(&j, []BenchResult{failed}))
	assert.Contains(t, j.String(), `"error": "no single ping reached all 500"`)
}
