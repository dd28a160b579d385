package walkthrough

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/netlab"
)

func TestMain(m *testing.M) {
	// the lab's namespaces are held by this binary re-executed as anchors
	netlab.RunAnchorIfRequested()
	os.Exit(m.Run())
}

var upstreamPrograms = []string{"choria", "choria-provisioner", "aaasvc", "stream-replicator", "nats-server", "nats"}

// upstreamDir finds the directory holding the upstream programs:
// $CHORIA_LAB_BIN_DIR, then PATH; it skips the test in one line where
// they cannot be run.
func upstreamDir(t *testing.T) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping the walkthrough end to end: the lab needs root")
	}
	if err := netlab.Preflight(); err != nil {
		t.Skipf("skipping the walkthrough end to end: %v", err)
	}
	var dirs []string
	if d := os.Getenv("CHORIA_LAB_BIN_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	var missing []string
	for _, p := range upstreamPrograms {
		found := false
		for _, d := range dirs {
			if st, err := os.Stat(filepath.Join(d, p)); err == nil && st.Mode()&0o111 != 0 {
				found = true
			}
		}
		if _, err := exec.LookPath(p); err == nil {
			found = true
		}
		if !found {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Skipf("skipping the walkthrough end to end: upstream programs %s not in $CHORIA_LAB_BIN_DIR or on PATH", strings.Join(missing, ", "))
	}
	return dirs
}

// buildOurs builds this repository's programs where the lab's hosts see
// them: not under /tmp or /root, which every host has its own of.
func buildOurs(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "choria-walkthrough-bin-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	out, err := exec.Command("go", "build", "-o", dir+"/", "../../cmd/...").CombinedOutput()
	require.NoError(t, err, string(out))
	return dir
}

// TestWalkthroughEndToEnd brings up a fresh lab with ten servers and the
// real programs, runs the whole shared scenario against it, and takes it
// down.
func TestWalkthroughEndToEnd(t *testing.T) {
	dirs := append(upstreamDir(t), buildOurs(t))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	start := time.Now()
	var progress strings.Builder
	r, err := lab.Up(ctx, lab.Options{Dir: t.TempDir(), BinDirs: dirs, Servers: 10, Out: &progress})
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
