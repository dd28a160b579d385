package upstreambuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixhash"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"github.com/reproducible-choria/deployment/upstream"
)

type builder struct {
	pins  *upstream.Pins
	o     Options
	proxy string // GOPROXY for what no file proxy serves
	work  string // scratch space, removed after the build
	out   string // the cache entry being made
}

// source builds a program from its pinned repository, as buildGoModule
// does: the tree, its vendor directory, code generation, then go build.
func (b *builder) source(ctx context.Context, name string, s upstream.Source) error {
	src, err := b.unpack(s.Repository, "sources."+name)
	if err != nil {
		return err
	}
	proxies := []string{}
	for _, p := range s.ModuleProxies {
		dir, err := b.moduleProxy(p, b.pins.ModuleProxies[p])
		if err != nil {
			return err
		}
		proxies = append(proxies, "file://"+dir)
	}
	goproxy := strings.Join(append(proxies, b.proxy), ",")

	b.o.Log.Info("vendoring modules", "program", name)
	if err := run(ctx, b.o.Log, src, goEnv("GOPROXY="+goproxy, "GOFLAGS="), b.o.Go, "mod", "vendor"); err != nil {
		return err
	}
	// a module without dependencies vendors nothing; buildGoModule's
	// vendor output is then an empty directory
	if err := os.MkdirAll(filepath.Join(src, "vendor"), 0o755); err != nil {
		return err
	}
	if err := checkHash(filepath.Join(src, "vendor"), s.VendorHash, "sources."+name+".vendorHash"); err != nil {
		return err
	}

	buildEnv := goEnv("GOPROXY=off", "GOFLAGS=-mod=vendor -trimpath")
	if g := s.Generate; g != nil {
		b.o.Log.Info("generating code", "program", name, "run", g.Run)
		if err := removeGlobs(src, g.Remove); err != nil {
			return err
		}
		if err := run(ctx, b.o.Log, src, buildEnv, b.o.Go, "generate", "-run", g.Run); err != nil {
			return err
		}
		if err := unstamp(src, g.Stamped); err != nil {
			return err
		}
	}

	b.o.Log.Info("compiling", "program", name)
	// buildGoModule adds -buildid= to the link flags
	ldflags := strings.Join(append(s.LinkFlags(), "-buildid="), " ")
	bin := filepath.Join(b.out, "bin", s.Binary)
	return run(ctx, b.o.Log, src, buildEnv, b.o.Go, "build", "-ldflags="+ldflags, "-o", bin, s.Package)
}

// module installs a program from the Go module proxy.
func (b *builder) module(ctx context.Context, m upstream.Module) error {
	b.o.Log.Info("installing from the module proxy", "package", m.Package, "version", m.Version)
	gobin := filepath.Join(b.work, "gobin")
	env := goEnv("GOBIN="+gobin, "GOFLAGS=-trimpath", "GOPROXY="+b.proxy)
	if err := run(ctx, b.o.Log, b.work, env, b.o.Go, "install", "-ldflags=-s -w", m.Package+"@"+m.Version); err != nil {
		return err
	}
	entries, err := os.ReadDir(gobin)
	if err != nil || len(entries) != 1 {
		return fmt.Errorf("go install %s@%s made no single program in %s", m.Package, m.Version, gobin)
	}
	return os.Rename(filepath.Join(gobin, entries[0].Name()), filepath.Join(b.out, "bin", m.Binary))
}

// archiveFor finds a repository's archive among the sources.
func (b *builder) archiveFor(r upstream.Repository, what string) (string, error) {
	if b.o.Sources == "" {
		return "", fmt.Errorf("%s: no sources directory given (the archives of %s)", what, r.Repo)
	}
	var tried []string
	for _, ref := range []string{r.Ref(), r.Rev[:7], r.Rev} {
		p := filepath.Join(b.o.Sources, r.Repo+"-"+ref+".tar.gz")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, filepath.Base(p))
	}
	return "", fmt.Errorf("%s: no archive of github.com/%s/%s at %s in %s (looked for %s)", what, r.Owner, r.Repo, r.Rev, b.o.Sources, strings.Join(tried, ", "))
}

// unpack unpacks a repository's archive and checks its tree's NAR hash.
func (b *builder) unpack(r upstream.Repository, what string) (string, error) {
	archive, err := b.archiveFor(r, what)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(b.work, r.Repo+"-")
	if err != nil {
		return "", err
	}
	b.o.Log.Info("unpacking", "archive", archive)
	if err := Untar(archive, dir); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if err := checkHash(dir, r.Hash, what+".hash"); err != nil {
		return "", fmt.Errorf("%w (archive %s)", err, archive)
	}
	return dir, nil
}

// checkHash compares a tree's NAR hash with a pin.
func checkHash(dir, want, pin string) error {
	got, err := NARHash(dir)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s: upstream/pins.json pins %s, but the tree hashes to %s", pin, want, got)
	}
	return nil
}

// NARHash is the SRI sha256 of a file tree's NAR serialisation, as
// `nix hash path` prints it and fetchFromGitHub's hash and
// buildGoModule's vendorHash are.
func NARHash(dir string) (string, error) {
	h := sha256.New()
	if err := nar.DumpPath(h, dir); err != nil {
		return "", fmt.Errorf("hashing %s: %w", dir, err)
	}
	return nixhash.MustNewHashWithEncoding(nixhash.SHA256, h.Sum(nil), nixhash.SRI, true).String(), nil
}

// Untar unpacks a gzipped tar archive into dir, dropping its one
// top-level directory as fetchFromGitHub does. Entries that would leave
// dir, and entries other than files, directories and symbolic links, are
// refused.
func Untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", archive, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(gz)
	top := ""
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", archive, err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // git archive's commit id
		}
		first, rest, _ := strings.Cut(strings.TrimPrefix(h.Name, "./"), "/")
		if top == "" {
			top = first
		}
		if first != top {
			return fmt.Errorf("%s: %s is outside the archive's one top-level directory %s", archive, h.Name, top)
		}
		rest = strings.TrimSuffix(rest, "/")
		if rest == "" {
			continue
		}
		if !filepath.IsLocal(rest) {
			return fmt.Errorf("%s: entry %s leaves the tree", archive, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(rest, 0o755)
		case tar.TypeReg:
			err = writeEntry(root, rest, h.FileInfo().Mode().Perm(), tr)
		case tar.TypeSymlink:
			if err = root.MkdirAll(filepath.Dir(rest), 0o755); err == nil {
				err = root.Symlink(h.Linkname, rest)
			}
		default:
			err = fmt.Errorf("entry %s has an unsupported type %q", h.Name, h.Typeflag)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
	}
	if top == "" {
		return fmt.Errorf("%s is empty", archive)
	}
	return nil
}

func writeEntry(root *os.Root, name string, perm fs.FileMode, r io.Reader) error {
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	// only the executable bit survives into a NAR; keep files writable so
	// the build tree can be removed and edited
	mode := fs.FileMode(0o644)
	if perm&0o111 != 0 {
		mode = 0o755
	}
	f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// moduleProxy makes a file:// Go module proxy serving one module version
// from its pinned source tree, and checks its h1: sum against the pin, as
// pkgs/go-module-proxy.nix does.
func (b *builder) moduleProxy(name string, m upstream.ModuleProxy) (string, error) {
	what := "moduleProxies." + name
	src, err := b.unpack(m.Repository, what)
	if err != nil {
		return "", err
	}
	proxy := filepath.Join(b.work, "goproxy-"+name)
	escaped, err := module.EscapePath(m.ModulePath)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	dir := filepath.Join(proxy, filepath.FromSlash(escaped), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	zipPath := filepath.Join(dir, m.Version+".zip")
	zf, err := os.Create(zipPath)
	if err != nil {
		return "", err
	}
	err = modzip.CreateFromDir(zf, module.Version{Path: m.ModulePath, Version: m.Version}, src)
	if cerr := zf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("%s: making the module zip: %w", what, err)
	}
	sum, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		return "", err
	}
	if sum != m.Sum {
		return "", fmt.Errorf("%s.sum: upstream/pins.json pins %s, but the module zip hashes to %s", what, m.Sum, sum)
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return "", err
	}
	files := map[string][]byte{
		m.Version + ".mod":  gomod,
		m.Version + ".info": fmt.Appendf(nil, "{\"Version\":%q,\"Time\":%q}\n", m.Version, m.Time),
		"list":              []byte(m.Version + "\n"),
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), content, 0o644); err != nil {
			return "", err
		}
	}
	return proxy, nil
}

func removeGlobs(dir string, globs []string) error {
	for _, g := range globs {
		matches, err := filepath.Glob(filepath.Join(dir, g))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// stampRE is the first line go-choria's generator writes, with the time.
var stampRE = regexp.MustCompile(`^// auto generated .*`)

// unstamp replaces the generation time in each generated file's first
// line, as pkgs/choria.nix's sed does, so rebuilds are identical.
func unstamp(dir string, globs []string) error {
	for _, g := range globs {
		matches, err := filepath.Glob(filepath.Join(dir, g))
		if err != nil {
			return err
		}
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				return err
			}
			first, rest, _ := bytes.Cut(b, []byte("\n"))
			first = stampRE.ReplaceAll(first, []byte("// auto generated"))
			if err := os.WriteFile(m, append(append(first, '\n'), rest...), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
