package nixcheck

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/reproducible-choria/deployment/internal/testenv"
)

// imageEval is testdata/eval-images.nix's answer: nix/images.nix as the
// stand-ins for dockerTools saw it.
type imageEval struct {
	Images map[string]struct {
		Name     string  `json:"name"`
		Tag      *string `json:"tag"`
		ImageTag string  `json:"imageTag"`
		Config   struct {
			User         string         `json:"User"`
			Env          []string       `json:"Env"`
			Entrypoint   []string       `json:"Entrypoint"`
			Cmd          []string       `json:"Cmd"`
			WorkingDir   string         `json:"WorkingDir"`
			ExposedPorts map[string]any `json:"ExposedPorts"`
		} `json:"config"`
		ExtraCommands    string   `json:"extraCommands"`
		FakeRootCommands string   `json:"fakeRootCommands"`
		Contents         []string `json:"contents"`
	} `json:"images"`
	Load struct {
		Name string `json:"name"`
		Text string `json:"text"`
	} `json:"load"`
	StandIns map[string]standIn `json:"standIns"`
}

// standIn is a derivation of eval-images.nix (see its header).
type standIn struct {
	Kind     string            `json:"kind"`
	Name     string            `json:"name"`
	Programs []string          `json:"programs"`
	Script   string            `json:"script"`
	Text     string            `json:"text"`
	Files    map[string]string `json:"files"`
}

func evalImages(t *testing.T, args ...string) *imageEval {
	t.Helper()
	out, err := nixEval(t, append([]string{"internal/nixcheck/testdata/eval-images.nix",
		"--arg", "nixpkgsLib", nixpkgsLib(t, "the images are not evaluated"), "--arg", "root", "./."}, args...)...)
	if err != nil {
		t.Fatalf("evaluating nix/images.nix failed: %v", err)
	}
	var ev imageEval
	if err := json.Unmarshal(out, &ev); err != nil {
		t.Fatal(err)
	}
	return &ev
}

var standInPathRE = regexp.MustCompile(`/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+`)

// builder lays out what the stand-ins stand for, each in a directory of
// its own: our programs built from cmd/, nixpkgs' tools as links to this
// machine's (chown and install recording ownership instead of changing
// it, as fakeroot does), upstream programs as stubs, runCommand outputs
// by running their scripts. Images are laid out as dockerTools lays
// them: contents linked into the root (lndir, as symlinkJoin), then
// extraCommands and fakeRootCommands run there.
type builder struct {
	t     *testing.T
	ev    *imageEval
	dir   string
	shims string
	paths map[string]string
	roots map[string]*imageRoot
}

func newBuilder(t *testing.T, ev *imageEval) *builder {
	t.Helper()
	b := &builder{t: t, ev: ev, dir: t.TempDir(), paths: map[string]string{}, roots: map[string]*imageRoot{}}
	b.shims = filepath.Join(b.dir, "shims")
	if err := os.MkdirAll(b.shims, 0o755); err != nil {
		t.Fatal(err)
	}
	install, err := exec.LookPath("install")
	if err != nil {
		testenv.Missing(t, "install (coreutils) is not on PATH")
	}
	// Ownership changes are recorded in $OWNERS (a line per path:
	// recursive flag, owner, path as given, working directory).
	shims := map[string]string{
		"chown": `#!/bin/sh
r=; if [ "$1" = -R ]; then r=-R; shift; fi
o=$1; shift
for p; do printf '%s\t%s\t%s\t%s\n' "$r" "$o" "$p" "$PWD" >> "${OWNERS:-/dev/null}"; done
`,
		"install": `#!/bin/bash
args=(); o=; g=
while [ $# -gt 0 ]; do
  case "$1" in
    -o) o=$2; shift 2 ;;
    -g) g=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -n "$o" ]; then printf '\t%s:%s\t%s\t%s\n' "$o" "$g" "${args[-1]}" "$PWD" >> "${OWNERS:-/dev/null}"; fi
exec ` + install + ` "${args[@]}"
`,
	}
	for name, text := range shims {
		if err := os.WriteFile(filepath.Join(b.shims, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// with is b failing t, for use in a subtest of the test that made b.
func (b *builder) with(t *testing.T) *builder {
	c := *b
	c.t = t
	return &c
}

// ours builds cmd/ once.
func (b *builder) ours() string {
	dir := filepath.Join(b.dir, "ours")
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "bin")+"/", "./cmd/...")
	build.Dir = testenv.ModuleRoot(b.t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.t.Fatalf("go build ./cmd/...: %v\n%s", err, out)
	}
	return dir
}

// path is the directory that stands for a stand-in store path.
func (b *builder) path(p string) string {
	b.t.Helper()
	if dir, ok := b.paths[p]; ok {
		return dir
	}
	si, ok := b.ev.StandIns[p]
	if !ok {
		b.t.Fatalf("%s is no stand-in eval-images.nix knows (a derivation no image holds?)", p)
	}
	dir := filepath.Join(b.dir, "store", filepath.Base(p))
	switch si.Kind {
	case "ours":
		dir = b.ours()
	case "package":
		for _, prog := range si.Programs {
			target := filepath.Join(b.shims, prog)
			if _, err := os.Stat(target); err != nil {
				if target, err = exec.LookPath(prog); err != nil {
					// upstream programs: present, never run here
					target = filepath.Join(b.dir, "stub")
					b.write(target, "#!/bin/sh\necho \"stand-in: $0 is not run here\" >&2\nexit 127\n", 0o755)
				}
			}
			if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
				b.t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, "bin", prog)); err != nil {
				b.t.Fatal(err)
			}
		}
	case "runCommand":
		b.run(si.Name, b.subst(si.Script), "", "out="+dir)
	case "bin":
		b.write(filepath.Join(dir, "bin", si.Name), "#!/usr/bin/env bash\n"+b.subst(si.Text), 0o755)
	case "tree":
		for rel, content := range si.Files {
			b.write(filepath.Join(dir, rel), content, 0o644)
		}
	default:
		b.t.Fatalf("%s: unknown stand-in kind %q", p, si.Kind)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	b.paths[p] = dir
	return dir
}

func (b *builder) write(path, content string, mode os.FileMode) {
	b.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		b.t.Fatal(err)
	}
}

// subst replaces every stand-in store path in s by its directory.
func (b *builder) subst(s string) string {
	b.t.Helper()
	return standInPathRE.ReplaceAllStringFunc(s, func(p string) string { return b.path(p) })
}

// run runs a bash script as stdenv runs a build's, in dir (when not
// empty), with env added; chown and install are the shims.
func (b *builder) run(what, script, dir string, env ...string) []byte {
	b.t.Helper()
	return b.runArgs(what, script, dir, nil, env...)
}

// runArgs is run with the script's arguments.
func (b *builder) runArgs(what, script, dir string, args []string, env ...string) []byte {
	b.t.Helper()
	cmd := exec.Command("bash", append([]string{"-euo", "pipefail", "-c", script, what}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "PATH="+b.shims+":"+os.Getenv("PATH")), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.t.Fatalf("%s: %v\n%s\n--- script\n%s", what, err, out, script)
	}
	return out
}

// imageRoot is an image's file system as dockerTools would make it.
type imageRoot struct {
	role, dir string
	user      string
	path      []string
	owners    []ownership
}

type ownership struct {
	recursive bool
	owner     string
	path      string // relative to the root
}

// image lays out the image of role.
func (b *builder) image(role string) *imageRoot {
	b.t.Helper()
	if r, ok := b.roots[role]; ok {
		return r
	}
	img, ok := b.ev.Images[role]
	if !ok {
		b.t.Fatalf("nix/images.nix has no image %s", role)
	}
	root := filepath.Join(b.dir, "images", role)
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.t.Fatal(err)
	}
	for _, c := range img.Contents {
		lndir(b.t, b.path(c), root)
	}
	b.run(role+": extraCommands", b.subst(img.ExtraCommands), root)
	owners := filepath.Join(b.dir, "owners-"+role)
	b.run(role+": fakeRootCommands", b.subst(img.FakeRootCommands), root, "OWNERS="+owners)
	r := &imageRoot{role: role, dir: root, user: img.Config.User, owners: readOwners(b.t, owners, root)}
	for _, e := range img.Config.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			r.path = filepath.SplitList(v)
		}
	}
	b.roots[role] = r
	return r
}

// lndir links every file of src into dst, making directories, the first
// link of a name winning, as symlinkJoin does.
func lndir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if _, err := os.Lstat(target); err == nil {
			return nil
		}
		return os.Symlink(p, target)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readOwners(t *testing.T, file, root string) []ownership {
	t.Helper()
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []ownership
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "\t")
		if len(parts) != 4 {
			t.Fatalf("%s: %q", file, sc.Text())
		}
		p := parts[2]
		if !filepath.IsAbs(p) {
			p = filepath.Join(parts[3], p)
		}
		if root != "" {
			// relative to the root, as ownerOf is asked
			if rel, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(rel, "..") {
				p = rel
			}
		}
		out = append(out, ownership{recursive: parts[0] == "-R", owner: parts[1], path: p})
	}
	return out
}

// ownerOf is the owner a path has (relative to the image's root, or
// absolute for what a script run outside one recorded): root unless chown
// or install said otherwise.
func ownerOf(owners []ownership, path string) string {
	owner := "0:0"
	for _, o := range owners {
		if o.path == path || (o.recursive && strings.HasPrefix(path, o.path+"/")) {
			owner = o.owner
		}
	}
	return owner
}

// file is the path of an absolute path of the image.
func (r *imageRoot) file(p string) string { return filepath.Join(r.dir, p) }

// has tells whether the image's PATH (or, for an absolute name, the image)
// holds program.
func (r *imageRoot) has(program string) bool {
	if filepath.IsAbs(program) {
		_, err := os.Stat(r.file(program))
		return err == nil
	}
	return slices.ContainsFunc(r.path, func(dir string) bool {
		fi, err := os.Stat(filepath.Join(r.file(dir), program))
		return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
	})
}

// passwdHome is the home of uid in the image's /etc/passwd.
func (r *imageRoot) passwdHome(uid string) (string, error) {
	b, err := os.ReadFile(r.file("/etc/passwd"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[2] == uid {
			return f[5], nil
		}
	}
	return "", fmt.Errorf("%s: no user %s in /etc/passwd", r.role, uid)
}

// TestImagesGetTheGoRuntime: a topology that tunes a role's Go runtime
// (the built-in one leaves Go's defaults) puts it in the role's image's
// environment, and in no other image's.
func TestImagesGetTheGoRuntime(t *testing.T) {
	ev := evalImages(t, "--arg", "topologyOverride", `{ roles.server.go_runtime = { GOGC = "200"; GOMEMLIMIT = "64MiB"; }; }`)
	for role, img := range ev.Images {
		want := map[string]string{}
		if role == "server" {
			want = map[string]string{"GOGC": "200", "GOMEMLIMIT": "64MiB"}
		}
		assert.Equal(t, want, goRuntime(img.Config.Env), "image %s", role)
	}
	assert.Contains(t, ev.Images, "server")
}
