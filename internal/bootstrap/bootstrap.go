// Package bootstrap creates every credential and configuration file of the
// lab from its topology, replacing the reference's setup script: an
// organisation issuer, the signers and services of every role, TLS for the
// broker and the AAA service, the servers' provisioning token, and each
// role's configuration.
//
// Runs are idempotent: existing files are verified and kept, missing ones are
// made, and a file is never replaced unless its role is rotated explicitly.
package bootstrap

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/reproducible-choria/deployment/internal/atomicfile"
	"github.com/reproducible-choria/deployment/topology"
)

// Options control one run.
type Options struct {
	Topology *topology.Topology
	// Out is the output directory; it is created 0700 if missing.
	Out string
	// Timings names the topology's timing profile rendered into configurations.
	Timings string
	// DemoSecrets uses the reference README's well-known passwords and token
	// for secrets that do not exist yet, instead of random ones.
	DemoSecrets bool
	// Rotate lists output directories (see Dirs) whose files are made anew,
	// with everything made from them; "all" rotates everything.
	Rotate []string
	// Render renders every configuration file again, keeping keys and secrets.
	Render bool
	// HelperCommand is how the provisioner runs choria-provision-helper.
	HelperCommand string
}

// Result says what a run did, by path relative to Out.
type Result struct {
	Created  []string
	Replaced []string
	Kept     []string
	Cleaned  []string
}

// Run brings Out up to date with the topology.
func Run(opts Options) (*Result, error) {
	if opts.Topology == nil {
		return nil, errors.New("no topology given")
	}
	if opts.Out == "" {
		return nil, errors.New("no output directory given")
	}
	if opts.HelperCommand == "" {
		opts.HelperCommand = "choria-provision-helper"
	}
	if opts.Timings == "" {
		opts.Timings = topology.TimingsReference
	}
	tm, err := opts.Topology.Timing(opts.Timings)
	if err != nil {
		return nil, err
	}
	if err := checkBrokerDirs(opts.Topology); err != nil {
		return nil, err
	}
	dirs := Dirs(opts.Topology)
	rotate, err := rotationSet(opts.Rotate, dirs)
	if err != nil {
		return nil, err
	}

	s := &state{topo: opts.Topology, timings: tm, opts: opts, files: map[string][]byte{}}
	if err := prepareOut(opts.Out); err != nil {
		return nil, err
	}
	res := &Result{}
	if res.Cleaned, err = removeStaleTemps(opts.Out, dirs); err != nil {
		return nil, err
	}

	// Plan and make everything in memory first, so a bad existing file or a
	// failure to generate stops the run before anything is written.
	type todo struct {
		a        artefact
		data     []byte
		replaces bool
	}
	var writes []todo
	made := map[string]string{} // path -> why it is being made
	kinds := map[string]kind{}
	for _, a := range artefacts(opts.Topology, opts.DemoSecrets) {
		kinds[a.path] = a.kind
		full := filepath.Join(opts.Out, filepath.FromSlash(a.path))
		existing, err := readExisting(full)
		if err != nil {
			return nil, err
		}
		exists := existing != nil

		why := ""
		switch {
		case rotate[a.dir()]:
			why = "rotated"
		case opts.Render && a.kind == kindConfig:
			why = "rendered"
		case !exists:
			why = "missing"
		}
		if why == "" {
			for _, d := range a.deps {
				switch made[d] {
				case "":
				case "missing":
					// what was made from a lost source cannot be trusted;
					// a lost derived file is only made again, and so are
					// the files made from it
					if !kinds[d].derived() {
						return nil, fmt.Errorf("%s exists but %s, which it is made from, is missing: restore %s, or remove %s, or rotate with --rotate %s",
							full, filepath.Join(opts.Out, d), d, a.path, a.dir())
					}
					why = "follows " + d
				default:
					why = "follows " + d
				}
			}
		}
		if why == "" {
			if err := a.check(s, existing); err != nil {
				return nil, fmt.Errorf("%s %v: remove it to have it made again, or rotate with --rotate %s", full, err, a.dir())
			}
			if a.stale != nil && a.stale(s, existing) {
				why = "changed"
			}
		}
		if why == "" {
			s.files[a.path] = existing
			res.Kept = append(res.Kept, a.path)
			continue
		}
		data, err := a.make(s)
		if err != nil {
			return nil, fmt.Errorf("making %s: %w", a.path, err)
		}
		s.files[a.path] = data
		made[a.path] = why
		writes = append(writes, todo{a: a, data: data, replaces: exists})
	}

	for _, w := range writes {
		if err := privateDir(filepath.Join(opts.Out, w.a.dir())); err != nil {
			return res, err
		}
		// through a temporary file and a rename, so a crash never leaves a
		// half-written credential behind (removeStaleTemps cleans up after it)
		if err := atomicfile.Write(filepath.Join(opts.Out, filepath.FromSlash(w.a.path)), w.data, fs.FileMode(w.a.mode())); err != nil {
			return res, err
		}
		if w.replaces {
			res.Replaced = append(res.Replaced, w.a.path)
		} else {
			res.Created = append(res.Created, w.a.path)
		}
	}
	return res, nil
}

func rotationSet(names, dirs []string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, n := range names {
		if n == "all" {
			for _, d := range dirs {
				set[d] = true
			}
			continue
		}
		if !slices.Contains(dirs, n) {
			return nil, fmt.Errorf("cannot rotate unknown role %q (known: all, %s)", n, strings.Join(dirs, ", "))
		}
		set[n] = true
	}
	return set, nil
}

// state holds the contents of every file kept or made so far in this run.
type state struct {
	topo    *topology.Topology
	timings topology.Timings
	opts    Options
	files   map[string][]byte
}

// The accessors below read files that artefacts() orders before their users
// and check() has validated, so a failure is a programming error.

func (s *state) text(p string) string {
	b, ok := s.files[p]
	if !ok {
		panic("bootstrap: " + p + " used before it was made")
	}
	return string(b)
}

func (s *state) seed(p string) ed25519.PrivateKey {
	k, err := parseSeed([]byte(s.text(p)))
	if err != nil {
		panic("bootstrap: " + p + " " + err.Error())
	}
	return k
}

func (s *state) publicOf(seed string) string { return publicHex(s.seed(seed)) }

func (s *state) tlsKey(p string) *ecdsa.PrivateKey {
	k, err := parseTLSKey([]byte(s.text(p)))
	if err != nil {
		panic("bootstrap: " + p + " " + err.Error())
	}
	return k
}

// tempPrefix names prepareOut's probe file. removeStaleTemps removes files
// with it (the probe of a run that crashed, or a temporary file of a
// version before atomicfile) as well as atomicfile's temporary files.
const tempPrefix = ".choria-bootstrap-"

func prepareOut(out string) error {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	st, err := os.Stat(out)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output %s is not a directory", out)
	}
	// Prove the directory is writable before planning, so an unwritable
	// directory fails with nothing half done.
	f, err := os.CreateTemp(out, tempPrefix+"probe-")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", out, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// removeStaleTemps deletes temporary files an interrupted run left behind.
func removeStaleTemps(out string, dirs []string) ([]string, error) {
	var removed []string
	for _, d := range append([]string{"."}, dirs...) {
		entries, err := os.ReadDir(filepath.Join(out, d))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", filepath.Join(out, d), err)
		}
		for _, e := range entries {
			if (atomicfile.IsTemp(e.Name()) || strings.HasPrefix(e.Name(), tempPrefix)) && e.Type().IsRegular() {
				p := filepath.Join(out, d, e.Name())
				if err := os.Remove(p); err != nil {
					return nil, fmt.Errorf("removing stale %s: %w", p, err)
				}
				removed = append(removed, filepath.ToSlash(filepath.Join(d, e.Name())))
			}
		}
	}
	return removed, nil
}

// readExisting returns nil when the file does not exist.
func readExisting(p string) ([]byte, error) {
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s exists but is not a regular file", p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return b, nil
}

// privateDir makes d, and makes it private, before a file is written in it.
func privateDir(d string) error {
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", d, err)
	}
	if err := os.Chmod(d, 0o700); err != nil {
		return fmt.Errorf("securing %s: %w", d, err)
	}
	return nil
}
