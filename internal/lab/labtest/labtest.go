// Package labtest finds and builds what end-to-end tests of the lab need.
package labtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reproducible-choria/deployment/internal/netlab"
)

// upstreamPrograms are the programs the lab runs that this repository does not build.
var upstreamPrograms = []string{"choria", "choria-provisioner", "aaasvc", "stream-replicator", "nats-server", "nats"}

// ProgramDirs returns the directories the lab should find its programs in:
// $CHORIA_LAB_BIN_DIR (when set; PATH is searched anyway) and a directory
// holding this repository's programs, freshly built. It skips the test in
// one line where the lab cannot run: without root, without the kernel
// features or tools it needs, or without the upstream programs.
func ProgramDirs(t testing.TB) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the lab needs root")
	}
	if err := netlab.Preflight(); err != nil {
		t.Skipf("skipping: %v", err)
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
		t.Skipf("skipping: upstream programs %s not in $CHORIA_LAB_BIN_DIR or on PATH", strings.Join(missing, ", "))
	}
	return append(dirs, buildOurs(t))
}

// buildOurs builds this repository's programs where the lab's hosts see
// them: not under /tmp or /root, which every host has its own of.
func buildOurs(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "choria-lab-test-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
	cmd.Dir = moduleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building this repository's programs: %v\n%s", err, out)
	}
	return dir
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
