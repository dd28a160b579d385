package upstreambuild

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/reproducible-choria/deployment/upstream"
)

// entry is one file of a test archive; a mode of 0 makes a directory.
type entry struct {
	name, body string
	mode       int64
	link       string
}

func writeArchive(t *testing.T, path string, entries []entry) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		switch {
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size, h.Mode = tar.TypeSymlink, e.link, 0, 0o777
		case e.mode == 0:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		require.NoError(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(e.body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	require.NoError(t, f.Close())
}

// helloSource is a tiny Go program with a generation step, as go-choria
// has, archived as `git archive --prefix=hello/` would.
var helloSource = []entry{
	{name: "hello/", mode: 0},
	{name: "hello/go.mod", body: "module example.com/hello\n\ngo 1.25\n", mode: 0o644},
	{name: "hello/main.go", mode: 0o644, body: `package main

//go:generate sh -c "printf '// auto generated at %s\\npackage main\\n\\nconst generated = \"yes\"\\n' \"$(date +%s%N)\" > gen_one.go"

import "fmt"

var version = "unset"

func main() { fmt.Println(version, generated) }
`},
	{name: "hello/gen_one.go", body: "package main\n\nconst generated = \"stale\"\n", mode: 0o644},
	{name: "hello/script.sh", body: "#!/bin/sh\n", mode: 0o755},
	{name: "hello/link", link: "script.sh"},
}

// fixture writes the hello archive into a sources directory and pins it
// with the hashes of its real tree.
func fixture(t *testing.T) (*upstream.Pins, string) {
	t.Helper()
	sources := t.TempDir()
	writeArchive(t, filepath.Join(sources, "hello-v1.2.3.tar.gz"), helloSource)
	tree := t.TempDir()
	require.NoError(t, Untar(filepath.Join(sources, "hello-v1.2.3.tar.gz"), tree))
	hash, err := NARHash(tree)
	require.NoError(t, err)
	vendorHash, err := NARHash(t.TempDir())
	require.NoError(t, err)
	return &upstream.Pins{Sources: map[string]upstream.Source{"hello": {
		Repository: upstream.Repository{Owner: "example", Repo: "hello", Tag: "v1.2.3", Rev: strings.Repeat("ab", 20), Hash: hash},
		Version:    "1.2.3", VendorHash: vendorHash, Package: ".", Binary: "hello",
		Generate: &upstream.Generate{Remove: []string{"gen_*.go"}, Run: "printf", Stamped: []string{"gen_*.go"}},
		LDFlags:  []string{"-X main.version=@version@"},
	}}}, sources
}

func TestBuildCachesByPin(t *testing.T) {
	testenv.RequireTool(t, "go")
	pins, sources := fixture(t)
	cache := t.TempDir()
	ctx := context.Background()

	built, err := Build(ctx, pins, Options{Sources: sources, Cache: cache})
	require.NoError(t, err)
	bin := built.Paths["hello"]
	out, err := exec.Command(bin).Output()
	require.NoError(t, err)
	assert.Equal(t, "1.2.3 yes\n", string(out), "the ldflags' @version@ is substituted and the generation ran after the removal")

	st, err := os.Stat(bin)
	require.NoError(t, err)
	again, err := Build(ctx, pins, Options{Sources: t.TempDir(), Cache: cache})
	require.NoError(t, err, "a cached program needs no sources")
	assert.Equal(t, bin, again.Paths["hello"])
	st2, err := os.Stat(bin)
	require.NoError(t, err)
	assert.Equal(t, st.ModTime(), st2.ModTime(), "not rebuilt")

	got, missing, err := Cached(pins, cache)
	require.NoError(t, err)
	assert.Empty(t, missing)
	assert.Equal(t, []string{filepath.Dir(bin)}, got.Dirs())

	// a new pin is a new build
	s := pins.Sources["hello"]
	s.LDFlags = []string{"-X main.version=@rev@"}
	pins.Sources["hello"] = s
	_, missing, err = Cached(pins, cache)
	require.NoError(t, err)
	assert.Equal(t, []string{"hello"}, missing)
	built, err = Build(ctx, pins, Options{Sources: sources, Cache: cache})
	require.NoError(t, err)
	out, err = exec.Command(built.Paths["hello"]).Output()
	require.NoError(t, err)
	assert.Equal(t, strings.Repeat("ab", 20)+" yes\n", string(out))

	dest := t.TempDir()
	require.NoError(t, built.CopyTo(dest))
	assert.FileExists(t, filepath.Join(dest, "hello"))
}

func TestBuildRefusesAWrongPin(t *testing.T) {
	testenv.RequireTool(t, "go")
	ctx := context.Background()
	cases := map[string]struct {
		edit func(s *upstream.Source)
		want string
	}{
		"hash":       {func(s *upstream.Source) { s.Hash = "sha256-" + strings.Repeat("A", 43) + "=" }, "sources.hello.hash: upstream/pins.json pins sha256-AAA"},
		"vendorHash": {func(s *upstream.Source) { s.VendorHash = "sha256-" + strings.Repeat("B", 43) + "=" }, "sources.hello.vendorHash: upstream/pins.json pins sha256-BBB"},
		"archive":    {func(s *upstream.Source) { s.Tag = "v9" }, "looked for hello-v9.tar.gz, hello-ababab"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			pins, sources := fixture(t)
			s := pins.Sources["hello"]
			c.edit(&s)
			pins.Sources["hello"] = s
			cache := t.TempDir()
			_, err := Build(ctx, pins, Options{Sources: sources, Cache: cache})
			require.ErrorContains(t, err, c.want)
			entries, err := os.ReadDir(cache)
			require.NoError(t, err)
			for _, e := range entries {
				assert.Equal(t, ".lock", e.Name(), "a failed build leaves nothing in the cache")
			}
		})
	}
}

// TestNARHashAsNix compares NARHash with `nix hash path` on a tree with an
// executable, a symbolic link, an empty directory and nested files.
func TestNARHashAsNix(t *testing.T) {
	nix := testenv.RequireTool(t, "nix")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "a", "empty"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "a", "file"), []byte("data\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "run"), []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.Symlink("a/file", filepath.Join(tree, "link")))

	got, err := NARHash(tree)
	require.NoError(t, err)
	out, err := exec.Command(nix, "--extra-experimental-features", "nix-command", "hash", "path", tree).Output()
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(string(out)), got)
}

func TestUntarRefuses(t *testing.T) {
	cases := map[string]struct {
		entries []entry
		want    string
	}{
		"escape":    {[]entry{{name: "x/", mode: 0}, {name: "x/../../evil", body: "x", mode: 0o644}}, "leaves the tree"},
		"two tops":  {[]entry{{name: "x/a", body: "a", mode: 0o644}, {name: "y/b", body: "b", mode: 0o644}}, "outside the archive's one top-level directory x"},
		"empty":     {nil, "is empty"},
		"overwrite": {[]entry{{name: "x/a", body: "a", mode: 0o644}, {name: "x/a", body: "b", mode: 0o644}}, "file exists"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "a.tar.gz")
			writeArchive(t, archive, c.entries)
			err := Untar(archive, t.TempDir())
			assert.ErrorContains(t, err, c.want)
		})
	}
}

func TestUnstamp(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "plugin_a.go")
	require.NoError(t, os.WriteFile(f, []byte("// auto generated at 2026-01-01 10:00:00\npackage main\n"), 0o644))
	require.NoError(t, unstamp(dir, []string{"plugin_*.go"}))
	b, err := os.ReadFile(f)
	require.NoError(t, err)
	assert.Equal(t, "// auto generated\npackage main\n", string(b))
}
