package nixcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/reproducible-choria/deployment/internal/testenv"
)

// packageFile is the derivation of our own Go programs.
const packageFile = "pkgs/choria-reference.nix"

// requireTool returns the path of a program, or skips the test in one line.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		testenv.Missing(t, "%s is not installed (apt-get install nix-bin)", name)
	}
	return testenv.RequireTool(t, name)
}

// nixpkgsLib is NIXPKGS_LIB, nixpkgs' lib directory the evaluations
// import; without it the test skips (fails under CI=true) saying what is
// not evaluated.
func nixpkgsLib(t *testing.T, unevaluated string) string {
	t.Helper()
	libDir := os.Getenv("NIXPKGS_LIB")
	if libDir == "" {
		testenv.Missing(t, "NIXPKGS_LIB is not set (a nixpkgs lib/ directory: ../shared/nixpkgs-lib/lib); %s", unevaluated)
	}
	return libDir
}

// nixEval runs `nix-instantiate --eval --strict --json ARGS` from the
// module root against a store that builds nothing, and returns the JSON,
// or an error carrying what the evaluation printed.
func nixEval(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(requireTool(t, "nix-instantiate"), append([]string{"--store", "dummy://", "--eval", "--strict", "--json"}, args...)...)
	cmd.Dir = testenv.ModuleRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr.String())
	}
	return out, nil
}

func readFile(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// nixFiles lists the .nix files git would see (tracked, or untracked and not
// ignored), relative to root. Outside a git checkout it walks the tree.
func nixFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.nix")
	cmd.Dir = root
	out, err := cmd.Output()
	var files []string
	if err == nil {
		for _, f := range strings.Split(string(out), "\x00") {
			if f == "" || slices.Contains(files, f) {
				continue
			}
			// A tracked file deleted in the work tree is not there to parse.
			if _, err := os.Stat(filepath.Join(root, f)); err != nil {
				continue
			}
			files = append(files, f)
		}
		return files
	}
	t.Logf("git ls-files failed (%v); walking the tree instead", err)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".nix") {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestNixFilesParse(t *testing.T) {
	nixInstantiate := requireTool(t, "nix-instantiate")
	root := testenv.ModuleRoot(t)
	files := nixFiles(t, root)
	if !slices.Contains(files, "flake.nix") || !slices.Contains(files, packageFile) {
		t.Fatalf("expected flake.nix and %s among the .nix files, found %q", packageFile, files)
	}
	for _, f := range files {
		// Parsing needs no store; the dummy store lets it run without a
		// Nix daemon or a writable /nix.
		cmd := exec.Command(nixInstantiate, "--store", "dummy://", "--parse", f)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("%s does not parse (nix-instantiate --parse %s: %v):\n%s", f, f, err, strings.TrimSpace(stderr.String()))
		}
	}
	t.Logf("%d .nix files parse: %s", len(files), strings.Join(files, ", "))
}

var vendorHashRE = regexp.MustCompile(`(?m)^\s*vendorHash\s*=\s*(null|"([^"]*)")\s*;`)

// declaredVendorHash returns the vendorHash of packageFile: the SRI string,
// or "null".
func declaredVendorHash(t *testing.T, root string) string {
	t.Helper()
	m := vendorHashRE.FindAllStringSubmatch(readFile(t, root, packageFile), -1)
	if len(m) != 1 {
		t.Fatalf("%s: expected exactly one `vendorHash = \"sha256-...\";` (or null) line, found %d", packageFile, len(m))
	}
	if m[0][1] == "null" {
		return "null"
	}
	return m[0][2]
}

// vendorHash computes what buildGoModule's goModules derivation produces:
// the NAR hash of `go mod vendor` output, or "null" when there is nothing to
// vendor (buildGoModule then requires vendorHash = null).
func vendorHash(t *testing.T, nix, root string) string {
	t.Helper()
	_, statErr := os.Stat(filepath.Join(root, "vendor"))
	hadVendor := statErr == nil

	out := filepath.Join(t.TempDir(), "vendor")
	cmd := exec.Command("go", "mod", "vendor", "-o", out)
	cmd.Dir = root
	// -mod=mod: read go.mod and the module cache, never a local vendor/.
	// The module cache (filled by `go test ./...` itself) is enough offline.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GO111MODULE=on", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor -o %s failed: %v\n%s", out, err, b)
	}
	if _, err := os.Stat(filepath.Join(root, "vendor")); err == nil && !hadVendor {
		t.Errorf("go mod vendor left a vendor/ directory in %s", root)
	}

	entries, err := os.ReadDir(out)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return "null"
	}
	if err != nil {
		t.Fatal(err)
	}
	hash := exec.Command(nix, "--extra-experimental-features", "nix-command", "hash", "path", out)
	var stderr bytes.Buffer
	hash.Stderr = &stderr
	b, err := hash.Output()
	if err != nil {
		t.Fatalf("nix hash path %s failed: %v\n%s", out, err, stderr.String())
	}
	got := strings.TrimSpace(string(b))
	if !strings.HasPrefix(got, "sha256-") {
		t.Fatalf("nix hash path printed %q, expected an SRI sha256 hash", got)
	}
	return got
}

func TestVendorHash(t *testing.T) {
	nix := requireTool(t, "nix")
	root := testenv.ModuleRoot(t)
	want := declaredVendorHash(t, root)
	got := vendorHash(t, nix, root)
	if got == want {
		t.Logf("%s: vendorHash %s matches go mod vendor", packageFile, got)
		return
	}
	quote := func(h string) string {
		if h == "null" {
			return h
		}
		return `"` + h + `"`
	}
	t.Fatalf("%s has vendorHash = %s, but the vendored dependencies hash to %s. Set it to:\n\n  vendorHash = %s;\n\n"+
		"(computed with: go mod vendor -o DIR && nix --extra-experimental-features nix-command hash path DIR)",
		packageFile, quote(want), quote(got), quote(got))
}

var (
	commandsRE = regexp.MustCompile(`(?s)\n\s*commands\s*=\s*\[(.*?)\];`)
	stringRE   = regexp.MustCompile(`"([^"]*)"`)
	mainProgRE = regexp.MustCompile(`mainProgram\s*=\s*"([^"]*)"\s*;`)
)

// TestCommandsListed keeps the package's program list equal to cmd/.
func TestCommandsListed(t *testing.T) {
	root := testenv.ModuleRoot(t)
	src := readFile(t, root, packageFile)
	m := commandsRE.FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("%s: no `commands = [ ... ];` list", packageFile)
	}
	var listed []string
	for _, s := range stringRE.FindAllStringSubmatch(m[1], -1) {
		listed = append(listed, s[1])
	}

	var present []string
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		goFiles, _ := filepath.Glob(filepath.Join(root, "cmd", e.Name(), "*.go"))
		if slices.ContainsFunc(goFiles, func(f string) bool { return !strings.HasSuffix(f, "_test.go") }) {
			present = append(present, e.Name())
		}
	}

	for _, c := range listed {
		if !slices.Contains(present, c) {
			t.Errorf("%s lists %q, but cmd/%s has no Go program: remove the line", packageFile, c, c)
		}
	}
	for _, c := range present {
		if !slices.Contains(listed, c) {
			t.Errorf("cmd/%s is not built by Nix: add the line %q to `commands` in %s", c, c, packageFile)
		}
	}
	if mp := mainProgRE.FindStringSubmatch(src); mp == nil || !slices.Contains(listed, mp[1]) {
		t.Errorf("%s: meta.mainProgram must be one of the listed commands %q", packageFile, listed)
	}
}

var (
	nixpkgsURLRE = regexp.MustCompile(`inputs\.nixpkgs\.url\s*=\s*"github:NixOS/nixpkgs/([^"/]+)"`)
	flakePathRE  = regexp.MustCompile(`(?:^|[\s(\[])(\./[A-Za-z0-9._/-]*[A-Za-z0-9_-])`)
	revRE        = regexp.MustCompile(`^[0-9a-f]{40}$`)
	narHashRE    = regexp.MustCompile(`^sha256-[A-Za-z0-9+/]{43}=$`)
)

// TestFlakeLock checks that flake.lock pins the nixpkgs branch flake.nix
// names (Nix would otherwise re-lock on first use), and that every relative
// path flake.nix refers to exists.
func TestFlakeLock(t *testing.T) {
	root := testenv.ModuleRoot(t)
	flake := readFile(t, root, "flake.nix")
	m := nixpkgsURLRE.FindStringSubmatch(flake)
	if m == nil {
		t.Fatal(`flake.nix: no inputs.nixpkgs.url = "github:NixOS/nixpkgs/<branch>"`)
	}
	branch := m[1]

	var lock struct {
		Nodes map[string]struct {
			Locked   map[string]any    `json:"locked"`
			Original map[string]string `json:"original"`
		} `json:"nodes"`
		Version int `json:"version"`
	}
	if err := json.Unmarshal([]byte(readFile(t, root, "flake.lock")), &lock); err != nil {
		t.Fatalf("flake.lock: %v", err)
	}
	node, ok := lock.Nodes["nixpkgs"]
	if !ok {
		t.Fatal("flake.lock: no nixpkgs node")
	}
	wantOriginal := map[string]string{"type": "github", "owner": "NixOS", "repo": "nixpkgs", "ref": branch}
	for k, v := range wantOriginal {
		if node.Original[k] != v {
			t.Errorf("flake.lock: nixpkgs original.%s = %q, flake.nix says %q", k, node.Original[k], v)
		}
	}
	rev, _ := node.Locked["rev"].(string)
	narHash, _ := node.Locked["narHash"].(string)
	lastModified, _ := node.Locked["lastModified"].(float64)
	if !revRE.MatchString(rev) || !narHashRE.MatchString(narHash) || lastModified <= 0 {
		t.Errorf("flake.lock: nixpkgs needs a full rev, an SRI sha256 narHash and lastModified; got %q %q %v", rev, narHash, lastModified)
	}

	for _, p := range flakePathRE.FindAllStringSubmatch(flake, -1) {
		if _, err := os.Stat(filepath.Join(root, p[1])); err != nil {
			t.Errorf("flake.nix refers to %s, which does not exist", p[1])
		}
	}
}

// TestFlakeJSONImports evaluates, with Nix's own JSON parser, every JSON
// file flake.nix imports (lib.importJSON is builtins.fromJSON of the file).
func TestFlakeJSONImports(t *testing.T) {
	nixInstantiate := requireTool(t, "nix-instantiate")
	root := testenv.ModuleRoot(t)
	for _, p := range flakePathRE.FindAllStringSubmatch(readFile(t, root, "flake.nix"), -1) {
		if !strings.HasSuffix(p[1], ".json") {
			continue
		}
		expr := "builtins.fromJSON (builtins.readFile " + p[1] + ")"
		cmd := exec.Command(nixInstantiate, "--store", "dummy://", "--eval", "--strict", "-E", expr)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("flake.nix imports %s, which Nix cannot read as JSON: %v\n%s", p[1], err, strings.TrimSpace(stderr.String()))
		}
	}
}

// TestNixFormatted runs `nixfmt --check` over every .nix file, as the flake's
// checks.formatting does, so an unformatted file fails here before it fails
// `nix flake check`. Skips when nixfmt is not on the PATH.
func TestNixFormatted(t *testing.T) {
	// the one skip CI allows: no package of nixfmt reaches these machines
	nixfmt, err := exec.LookPath("nixfmt")
	if err != nil {
		t.Skip("skipping: nixfmt is not on PATH (nix fmt, or nix develop, has it)")
	}
	root := testenv.ModuleRoot(t)
	files := nixFiles(t, root)
	cmd := exec.Command(nixfmt, append([]string{"--check"}, files...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nixfmt --check: %v\n%s\nformat them with: nixfmt %s", err, strings.TrimSpace(string(out)), strings.Join(files, " "))
	}
}
