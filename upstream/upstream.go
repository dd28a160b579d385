// Package upstream holds the pins of the upstream programs the deployment
// runs, pins.json: the file pkgs/*.nix read with lib.importJSON and the
// builder (internal/upstreambuild) embeds, so a version bump changes one
// file for both. Its format is described in the file's own description.
package upstream

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
)

//go:embed pins.json
var embedded []byte

// Pins is pins.json.
type Pins struct {
	Description   string                 `json:"description"`
	Sources       map[string]Source      `json:"sources"`
	ModuleProxies map[string]ModuleProxy `json:"moduleProxies"`
	Modules       map[string]Module      `json:"modules"`
}

// Repository is a commit of a public GitHub repository and the NAR hash
// of its tree.
type Repository struct {
	Owner string `json:"owner"`
	Repo  string `json:"repo"`
	// Tag is the tag the commit carries; empty for an untagged commit.
	Tag  string `json:"tag"`
	Rev  string `json:"rev"`
	Hash string `json:"hash"`
}

// Source is a program built from a repository's commit.
type Source struct {
	Repository
	Version       string    `json:"version"`
	VendorHash    string    `json:"vendorHash"`
	ModuleProxies []string  `json:"moduleProxies"`
	Generate      *Generate `json:"generate"`
	Package       string    `json:"package"`
	Binary        string    `json:"binary"`
	LDFlags       []string  `json:"ldflags"`
}

// Generate is a code generation step run before the build.
type Generate struct {
	// Remove are globs of files deleted first.
	Remove []string `json:"remove"`
	// Run is the `go generate -run` pattern.
	Run string `json:"run"`
	// Stamped are globs of generated files whose first line holds the
	// generation's wall-clock time; it is normalised so rebuilds match.
	Stamped []string `json:"stamped"`
}

// ModuleProxy is a Go module version served from a file:// proxy made
// from its source tree, for a module the public proxy does not serve.
type ModuleProxy struct {
	Repository
	ModulePath string `json:"modulePath"`
	Version    string `json:"version"`
	// Sum is the module's h1: line in the consumer's go.sum.
	Sum string `json:"sum"`
	// Time is the tagged commit's time, RFC 3339 in UTC.
	Time string `json:"time"`
}

// Module is a program installed from the Go module proxy.
type Module struct {
	Package     string `json:"package"`
	Version     string `json:"version"`
	Binary      string `json:"binary"`
	NixpkgsAttr string `json:"nixpkgsAttr"`
}

// Load returns the embedded pins, validated.
func Load() (*Pins, error) { return Parse(embedded) }

// Parse decodes and validates pins, refusing unknown fields.
func Parse(b []byte) (*Pins, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Pins
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("upstream pins: %w", err)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("upstream pins: %w", err)
	}
	return &p, nil
}

var (
	sriRE     = regexp.MustCompile(`^sha256-[A-Za-z0-9+/]{43}=$`)
	h1RE      = regexp.MustCompile(`^h1:[A-Za-z0-9+/]{43}=$`)
	revRE     = regexp.MustCompile(`^[0-9a-f]{40}$`)
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	timeRE    = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	semverRE  = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)
	placehold = regexp.MustCompile(`@[A-Za-z]+@`)
)

func (r Repository) validate(what string) error {
	switch {
	case !nameRE.MatchString(r.Owner) || !nameRE.MatchString(r.Repo):
		return fmt.Errorf("%s: owner %q and repo %q must be GitHub names", what, r.Owner, r.Repo)
	case !revRE.MatchString(r.Rev):
		return fmt.Errorf("%s: rev %q is not a full commit id", what, r.Rev)
	case !sriRE.MatchString(r.Hash):
		return fmt.Errorf("%s: hash %q is not an SRI sha256 hash", what, r.Hash)
	case r.Tag != "" && !nameRE.MatchString(r.Tag):
		return fmt.Errorf("%s: tag %q is not a tag name", what, r.Tag)
	}
	return nil
}

func (p *Pins) validate() error {
	if len(p.Sources) == 0 {
		return fmt.Errorf("no sources")
	}
	binaries := map[string]string{}
	claim := func(binary, owner string) error {
		if !nameRE.MatchString(binary) {
			return fmt.Errorf("%s: binary %q is not a file name", owner, binary)
		}
		if other, ok := binaries[binary]; ok {
			return fmt.Errorf("%s and %s both install %s", other, owner, binary)
		}
		binaries[binary] = owner
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(p.Sources)) {
		s := p.Sources[name]
		what := "sources." + name
		if err := s.validate(what); err != nil {
			return err
		}
		if !sriRE.MatchString(s.VendorHash) {
			return fmt.Errorf("%s: vendorHash %q is not an SRI sha256 hash", what, s.VendorHash)
		}
		if s.Version == "" {
			return fmt.Errorf("%s: no version", what)
		}
		if s.Package != "." && !strings.HasPrefix(s.Package, "./") {
			return fmt.Errorf("%s: package %q must be . or ./path", what, s.Package)
		}
		if err := claim(s.Binary, what); err != nil {
			return err
		}
		for _, f := range s.LDFlags {
			for _, ph := range placehold.FindAllString(f, -1) {
				if ph != "@version@" && ph != "@rev@" {
					return fmt.Errorf("%s: ldflag %q has %s; only @version@ and @rev@ are substituted", what, f, ph)
				}
			}
		}
		for _, proxy := range s.ModuleProxies {
			if _, ok := p.ModuleProxies[proxy]; !ok {
				return fmt.Errorf("%s: module proxy %q is not in moduleProxies", what, proxy)
			}
		}
		if g := s.Generate; g != nil {
			if g.Run == "" {
				return fmt.Errorf("%s: generate has no run pattern", what)
			}
			for _, glob := range slices.Concat(g.Remove, g.Stamped) {
				if _, err := path.Match(glob, ""); err != nil || strings.Contains(glob, "/") {
					return fmt.Errorf("%s: generate glob %q must be a file name pattern", what, glob)
				}
			}
		}
	}
	for name, m := range p.ModuleProxies {
		what := "moduleProxies." + name
		if err := m.validate(what); err != nil {
			return err
		}
		switch {
		case !semverRE.MatchString(m.Version):
			return fmt.Errorf("%s: version %q is not vX.Y.Z", what, m.Version)
		case !h1RE.MatchString(m.Sum):
			return fmt.Errorf("%s: sum %q is not a go.sum h1: hash", what, m.Sum)
		case !timeRE.MatchString(m.Time):
			return fmt.Errorf("%s: time %q is not RFC 3339 in UTC", what, m.Time)
		case m.ModulePath == "" || strings.ToLower(m.ModulePath) != m.ModulePath:
			return fmt.Errorf("%s: modulePath %q must be a lower-case module path", what, m.ModulePath)
		}
	}
	for name, m := range p.Modules {
		what := "modules." + name
		if !semverRE.MatchString(m.Version) || m.Package == "" || m.NixpkgsAttr == "" {
			return fmt.Errorf("%s: needs package, version vX.Y.Z and nixpkgsAttr", what)
		}
		if err := claim(m.Binary, what); err != nil {
			return err
		}
	}
	return nil
}

// LinkFlags returns the -ldflags words with @version@ and @rev@
// substituted, as pkgs/*.nix substitutes them.
func (s Source) LinkFlags() []string {
	r := strings.NewReplacer("@version@", s.Version, "@rev@", s.Rev)
	out := make([]string, len(s.LDFlags))
	for i, f := range s.LDFlags {
		out[i] = r.Replace(f)
	}
	return out
}

// Ref is the tag, or the commit for an untagged pin: what an archive of
// the repository is named after.
func (r Repository) Ref() string {
	if r.Tag != "" {
		return r.Tag
	}
	return r.Rev[:7]
}

// Key identifies a source pin and everything that goes into its build:
// two builds with the same key are the same program.
func (p *Pins) Key(name string) (string, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	if s, ok := p.Sources[name]; ok {
		if err := enc.Encode(s); err != nil {
			return "", err
		}
		for _, proxy := range s.ModuleProxies {
			if err := enc.Encode(p.ModuleProxies[proxy]); err != nil {
				return "", err
			}
		}
	} else if m, ok := p.Modules[name]; ok {
		if err := enc.Encode(m); err != nil {
			return "", err
		}
	} else {
		return "", fmt.Errorf("no upstream program %q is pinned", name)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Programs lists every pinned program's name, sources first, each sorted.
func (p *Pins) Programs() []string {
	return slices.Concat(slices.Sorted(maps.Keys(p.Sources)), slices.Sorted(maps.Keys(p.Modules)))
}

// Binary is the installed file name of a pinned program.
func (p *Pins) Binary(name string) string {
	if s, ok := p.Sources[name]; ok {
		return s.Binary
	}
	return p.Modules[name].Binary
}
