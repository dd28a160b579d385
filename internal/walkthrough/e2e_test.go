package walkthrough

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/clilog"
	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/lab/labtest"
	"github.com/reproducible-choria/deployment/internal/netlab/netlabtest"
)

func TestMain(m *testing.M) { netlabtest.Main(m) }

// TestWalkthroughEndToEnd brings up a fresh lab with ten servers and the
// real programs, runs the whole shared scenario against it, and takes it
// down. The lab is NixOS-like: its hosts see none of this machine's tools,
// only those on the lab's PATH, as under `nix run .#lab` on NixOS.
func TestWalkthroughEndToEnd(t *testing.T) {
	dirs := labtest.ProgramDirs(t)
	tools := labtest.ToolDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	start := time.Now()
	var progress strings.Builder
	r, err := lab.Up(ctx, lab.Options{Dir: t.TempDir(), BinDirs: append(dirs, tools), ToolPath: tools, NixOSLike: true, Servers: 10, Log: clilog.New(&progress, "choria-lab", slog.LevelInfo)})
	require.NoError(t, err, progress.String())
	defer r.Down()
	up := time.Since(start)

	var out strings.Builder
	report := filepath.Join(t.TempDir(), "walkthrough.json")
	rep, err := RunLab(ctx, LabOptions{Layout: r.Plan.Layout, Report: report, Out: &out})
	t.Logf("lab up in %s; walkthrough:\n%s", up.Round(100*time.Millisecond), out.String())
	require.NoError(t, err)
	require.True(t, rep.OK())

	scen, err := Default()
	require.NoError(t, err)
	steps := 0
	for _, st := range scen.Steps {
		if st.Each == EachServers {
			steps += 10
		} else {
			steps++
		}
	}
	assert.Equal(t, steps, rep.Passed, "every step ran and passed, each-server steps once per server")
	assert.FileExists(t, report)

	// no secret's value in anything shown or written
	st, err := lab.ReadState(r.Plan.Layout)
	require.NoError(t, err)
	vars, err := LabVars(r.Plan.Topology, r.Plan.Layout, st)
	require.NoError(t, err)
	reportText, err := os.ReadFile(report)
	require.NoError(t, err)
	secrets := 0
	for name, value := range vars {
		if IsSecret(name) {
			secrets++
			assert.NotContains(t, out.String(), value, "%s is printed", name)
			assert.NotContains(t, string(reportText), value, "%s is in the report", name)
		}
	}
	assert.Equal(t, 4, secrets, "three passwords and the provisioning token")
	if fi, err := os.Stat(report); assert.NoError(t, err) {
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	}

	// what the walkthrough claims about the servers' credentials, checked
	// from outside the hosts: every server.seed and server.jwt is new
	for _, s := range LabServers(r.State()) {
		etc := r.Plan.Layout.HostEtcChoria(s.Name)
		for _, f := range []string{"server.seed", "server.jwt", "server.conf"} {
			st, err := os.Stat(filepath.Join(etc, f))
			require.NoError(t, err, "%s: %s", s.Name, f)
			assert.True(t, st.ModTime().After(start.Add(up)), "%s: %s was written again during the walkthrough", s.Name, f)
		}
	}
}
