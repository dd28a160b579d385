// Package labtest finds and builds what end-to-end tests of the lab need.
package labtest

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/reproducible-choria/deployment/internal/flock"
	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/reproducible-choria/deployment/internal/upstreambuild"
	"github.com/reproducible-choria/deployment/upstream"
)

// SourcesEnv names the directory of the pinned upstream source archives;
// by default ../shared/upstream beside this repository, where it exists.
const SourcesEnv = "CHORIA_UPSTREAM_SOURCES"

// ProgramDirs returns the directories the lab should find its programs in:
// $CHORIA_LAB_BIN_DIR (when set), PATH, then the upstream build cache,
// which it fills from the pinned sources where they are; and a directory
// holding this repository's programs, freshly built. Where the lab cannot
// run (no root, kernel features, tools or upstream programs) it skips in
// one line, or fails with CI=true. It also makes the test the only lab
// test running on this machine until it ends: labs of two test packages
// at once would compete for the CPU and for their deadlines.
func ProgramDirs(t testing.TB) []string {
	t.Helper()
	testenv.RequireRoot(t)
	if err := netlab.Preflight(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	var dirs []string
	if d := os.Getenv("CHORIA_LAB_BIN_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	pins, err := upstream.Load()
	if err != nil {
		t.Fatal(err)
	}
	missing := notFound(pins, dirs)
	if len(missing) > 0 {
		built := fromCache(t, pins)
		for _, name := range missing {
			if p, ok := built.Paths[name]; ok {
				dirs = append(dirs, filepath.Dir(p))
			}
		}
		missing = notFound(pins, dirs)
	}
	if len(missing) > 0 {
		testenv.Missing(t, "upstream programs %s are not in $CHORIA_LAB_BIN_DIR, on PATH or in the build cache; build them with `choria-lab build-upstream --sources DIR` (see the README)", strings.Join(missing, ", "))
	}
	lockLabs(t)
	return append(dirs, buildOurs(t))
}

// notFound lists the pinned programs in none of dirs and not on PATH.
func notFound(pins *upstream.Pins, dirs []string) []string {
	var missing []string
	for _, name := range pins.Programs() {
		bin := pins.Binary(name)
		found := false
		for _, d := range dirs {
			if st, err := os.Stat(filepath.Join(d, bin)); err == nil && st.Mode()&0o111 != 0 {
				found = true
			}
		}
		if _, err := exec.LookPath(bin); err == nil {
			found = true
		}
		if !found {
			missing = append(missing, name)
		}
	}
	return missing
}

// fromCache returns the cached upstream programs, first building those
// that are missing when the pinned sources are at hand.
func fromCache(t testing.TB, pins *upstream.Pins) *upstreambuild.Built {
	t.Helper()
	built, uncached, err := upstreambuild.Cached(pins, "")
	if err != nil {
		t.Fatal(err)
	}
	sources := os.Getenv(SourcesEnv)
	if sources == "" {
		sources = filepath.Join(filepath.Dir(testenv.ModuleRoot(t)), "shared", "upstream")
	}
	if len(uncached) == 0 || !isDir(sources) {
		return built
	}
	t.Logf("building the upstream programs %s from %s into the cache (minutes on a cold cache)", strings.Join(uncached, ", "), sources)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	if _, err := upstreambuild.Build(context.Background(), pins, upstreambuild.Options{Sources: sources, Log: log, Only: uncached}); err != nil {
		t.Fatalf("building the upstream programs: %v", err)
	}
	all, _, err := upstreambuild.Cached(pins, "")
	if err != nil {
		t.Fatal(err)
	}
	return all
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// lockLabs holds a machine-wide lock on lab tests until the test ends.
func lockLabs(t testing.TB) {
	t.Helper()
	release, err := flock.Acquire(context.Background(), filepath.Join(os.TempDir(), "choria-lab-tests.lock"),
		func() { t.Log("waiting for another lab test on this machine to end") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
}

// buildOurs builds this repository's programs where the lab's hosts see
// them: not under /tmp or /root, which every host has its own of.
func buildOurs(t testing.TB) string {
	t.Helper()
	dir := hostVisibleDir(t, "choria-lab-test-bin-")
	testenv.Build(t, dir, "./cmd/...")
	return dir
}

// HostTools are the programs the hosts' shells and the walkthrough's
// commands use, besides the lab's own: what a NixOS-like lab must be
// given on its PATH.
var HostTools = []string{
	"awk", "base64", "bash", "cat", "cp", "cut", "date", "env", "grep", "gzip", "head", "id", "ls",
	"mkdir", "mv", "rm", "sed", "seq", "sha256sum", "sh", "sleep", "sort", "tail", "tar", "timeout",
	"tr", "wc",
}

// ToolDir copies HostTools and setpriv (which starts services inside the
// hosts) from this machine into one directory the hosts can see, as
// `nix run .#lab` gives them a PATH of store directories: a NixOS-like
// lab (lab.Options.NixOSLike) runs with it as its ToolPath and BinDirs.
func ToolDir(t testing.TB) string {
	t.Helper()
	dir := hostVisibleDir(t, "choria-lab-test-tools-")
	for _, name := range append(slices.Clone(HostTools), "setpriv") {
		p, err := exec.LookPath(name)
		if err != nil {
			testenv.Missing(t, "%s is not on PATH", name)
		}
		if p, err = filepath.EvalSymlinks(p); err != nil {
			t.Fatal(err)
		}
		if err := testenv.CopyExecutable(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// hostVisibleDir is a new directory the lab's hosts see (not under /tmp or
// /root, which every host has its own of) and whose programs services
// running as their own users may execute (the provisioner its helper);
// removed when the test ends.
func hostVisibleDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
