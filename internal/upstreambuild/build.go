// Package upstreambuild builds the upstream programs the lab runs from
// their pinned sources (upstream/pins.json), the way pkgs/*.nix builds
// them: the source tree's and the vendor tree's NAR hashes checked against
// the pins, module proxies served from files, code generation, the same
// flags. Built programs are cached by pin, so a second run rebuilds
// nothing.
package upstreambuild

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kballard/go-shellquote"
	"github.com/reproducible-choria/deployment/internal/atomicfile"
	"github.com/reproducible-choria/deployment/internal/flock"
	"github.com/reproducible-choria/deployment/upstream"
)

// Options says where the sources are, where the cache is and how to run Go.
type Options struct {
	// Sources is a directory of source archives, each named
	// REPO-REF.tar.gz (REF the tag, or the commit or its first seven
	// digits) with one top-level directory: `git archive --prefix=REPO/`
	// or GitHub's tarball of the commit.
	Sources string
	// Cache holds the built programs; DefaultCache when empty.
	Cache string
	// Go is the go command; "go" on PATH when empty.
	Go string
	// Log receives progress; nothing is logged when nil.
	Log *slog.Logger
	// Only limits the build to these programs; all of them when empty.
	Only []string
}

// Built is where each built program is.
type Built struct {
	// Paths maps each program's name to its executable.
	Paths map[string]string
}

// Dirs are the directories holding the programs, for a lab's --bin-dir.
func (b *Built) Dirs() []string {
	var dirs []string
	seen := map[string]bool{}
	for _, p := range b.Paths {
		d := filepath.Dir(p)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// CacheEnv overrides DefaultCache.
const CacheEnv = "CHORIA_UPSTREAM_CACHE"

// DefaultCache is $CHORIA_UPSTREAM_CACHE, or for root
// /var/cache/choria-reference/upstream (the lab's hosts have their own
// /root, so programs under root's home are invisible to them), or
// choria-reference/upstream in the user's cache directory.
func DefaultCache() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return filepath.Abs(d)
	}
	if os.Geteuid() == 0 {
		return "/var/cache/choria-reference/upstream", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding a cache directory (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(d, "choria-reference", "upstream"), nil
}

// entryDir is a program's directory in the cache: NAME-KEY/bin/BINARY.
func entryDir(cache string, pins *upstream.Pins, name string) (string, error) {
	key, err := pins.Key(name)
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, fmt.Sprintf("%s-%s-%s-%s", name, key, runtime.GOOS, runtime.GOARCH)), nil
}

// CachePath is where a pinned program's build is in the cache.
func CachePath(pins *upstream.Pins, cache, name string) (string, error) {
	dir, err := entryDir(cache, pins, name)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "bin", pins.Binary(name)), nil
}

// Cached returns the programs of pins already in the cache, and the names
// of those that are not.
func Cached(pins *upstream.Pins, cache string) (*Built, []string, error) {
	if cache == "" {
		var err error
		if cache, err = DefaultCache(); err != nil {
			return nil, nil, err
		}
	}
	b := &Built{Paths: map[string]string{}}
	var missing []string
	for _, name := range pins.Programs() {
		p, err := CachePath(pins, cache, name)
		if err != nil {
			return nil, nil, err
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			b.Paths[name] = p
		} else {
			missing = append(missing, name)
		}
	}
	return b, missing, nil
}

// Build builds every pinned program not yet in the cache and returns
// where all of them are. Concurrent builders of one cache wait for each
// other; a failed build leaves nothing in the cache.
func Build(ctx context.Context, pins *upstream.Pins, o Options) (*Built, error) {
	if o.Cache == "" {
		var err error
		if o.Cache, err = DefaultCache(); err != nil {
			return nil, err
		}
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	want := pins.Programs()
	if len(o.Only) > 0 {
		for _, n := range o.Only {
			if _, err := pins.Key(n); err != nil {
				return nil, err
			}
		}
		want = o.Only
	}
	if err := os.MkdirAll(o.Cache, 0o755); err != nil {
		return nil, fmt.Errorf("creating the cache %s: %w", o.Cache, err)
	}
	lock := filepath.Join(o.Cache, ".lock")
	unlock, err := flock.Acquire(ctx, lock, func() { o.Log.Info("waiting for another build of this cache", "lock", lock) })
	if err != nil {
		return nil, err
	}
	defer unlock()

	b := &Built{Paths: map[string]string{}}
	proxy := "" // the default GOPROXY, asked of go once, when a build needs it
	for i, name := range want {
		dir, err := entryDir(o.Cache, pins, name)
		if err != nil {
			return nil, err
		}
		bin := filepath.Join(dir, "bin", pins.Binary(name))
		if _, err := os.Stat(bin); err == nil {
			o.Log.Info("cached", "program", name, "step", fmt.Sprintf("%d/%d", i+1, len(want)), "path", bin)
			b.Paths[name] = bin
			continue
		}
		o.Log.Info("building", "program", name, "step", fmt.Sprintf("%d/%d", i+1, len(want)))
		start := time.Now()
		if proxy == "" {
			proxy = defaultProxy(o.Go)
		}
		if err := buildInto(ctx, pins, name, dir, proxy, o); err != nil {
			return nil, fmt.Errorf("building %s: %w", name, err)
		}
		o.Log.Info("built", "program", name, "seconds", time.Since(start).Round(time.Second).Seconds(), "path", bin)
		b.Paths[name] = bin
	}
	return b, nil
}

// buildInto builds one program into a temporary directory beside dir and
// renames it into place, so the cache holds whole builds only.
func buildInto(ctx context.Context, pins *upstream.Pins, name, dir, proxy string, o Options) error {
	work, err := os.MkdirTemp(filepath.Dir(dir), ".build-"+name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "out")
	if err := os.MkdirAll(filepath.Join(out, "bin"), 0o755); err != nil {
		return err
	}
	b := &builder{pins: pins, o: o, proxy: proxy, work: work, out: out}
	if s, ok := pins.Sources[name]; ok {
		err = b.source(ctx, name, s)
	} else {
		err = b.module(ctx, pins.Modules[name])
	}
	if err != nil {
		return err
	}
	if err := os.Rename(out, dir); err != nil {
		return fmt.Errorf("moving the build into the cache: %w", err)
	}
	return nil
}

// goEnv is the environment of every go command of a build: no toolchain
// download, no workspace, no cgo, as in buildGoModule.
func goEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "GOFLAGS", "GOTOOLCHAIN", "GOWORK", "CGO_ENABLED", "GOPROXY", "GO111MODULE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, append([]string{"GOTOOLCHAIN=local", "GOWORK=off", "CGO_ENABLED=0", "GO111MODULE=on"}, extra...)...)
}

// run runs a command in dir, returning its output in the error when it fails.
func run(ctx context.Context, log *slog.Logger, dir string, env []string, name string, args ...string) error {
	log.Debug("running", "dir", dir, "command", shellquote.Join(append([]string{name}, args...)...))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := strings.TrimSpace(string(out))
		if len(tail) > 4000 {
			tail = "…" + tail[len(tail)-4000:]
		}
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail)
	}
	return nil
}

// defaultProxy is GOPROXY as the user has it, for what the file proxies
// do not serve.
func defaultProxy(goCmd string) string {
	if p := os.Getenv("GOPROXY"); p != "" {
		return p
	}
	out, err := exec.Command(goCmd, "env", "GOPROXY").Output()
	if err == nil && strings.TrimSpace(string(out)) != "" {
		return strings.TrimSpace(string(out))
	}
	return "https://proxy.golang.org,direct"
}

// CopyTo copies the programs into dir, replacing what is there.
func (b *Built) CopyTo(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range b.Paths {
		data, err := os.ReadFile(p)
		if err == nil {
			err = atomicfile.Write(filepath.Join(dir, filepath.Base(p)), data, 0o755)
		}
		if err != nil {
			return fmt.Errorf("copying %s to %s: %w", filepath.Base(p), dir, err)
		}
	}
	return nil
}
