package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/reproducible-choria/deployment/internal/upstreambuild"
	"github.com/reproducible-choria/deployment/upstream"
)

// Programs are the absolute paths of everything the lab runs.
type Programs struct {
	// upstream
	Choria, Provisioner, AAASvc, StreamReplicator, NATSServer, NATS string
	// ours
	ProvisionHelper, Requests, Facts, PluginPack, PluginsServer, Lab string
	// system
	Nsenter, Setpriv string
}

// upstreamHints says where each program comes from, for the error message.
var upstreamHints = []struct{ name, from string }{
	{"choria", "go-choria 0.30.2 or newer"},
	{"choria-provisioner", "choria-io/provisioner"},
	{"aaasvc", "choria-io/aaasvc"},
	{"stream-replicator", "choria-io/stream-replicator"},
	{"nats-server", "nats-io/nats-server"},
	{"nats", "nats-io/natscli"},
	{"choria-provision-helper", "this repository"},
	{"requests", "this repository"},
	{"choria-facts", "this repository"},
	{"choria-plugin-pack", "this repository"},
	{"choria-plugins-server", "this repository"},
	{"nsenter", "util-linux"},
	{"setpriv", "util-linux"},
}

// FindPrograms looks each program up in extraDirs, then beside this
// executable (our own programs are installed together), then on PATH,
// then (the upstream ones) in the cache of `choria-lab build-upstream`.
// It reports every missing program in one error.
func FindPrograms(extraDirs []string) (*Programs, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locating choria-lab itself: %w", err)
	}
	dirs := append(append([]string(nil), extraDirs...), filepath.Dir(self))

	found := map[string]string{}
	var missing []string
	cached := cachedUpstream()
	for _, h := range upstreamHints {
		p, err := lookup(h.name, dirs)
		if err != nil && cached[h.name] != "" {
			p, err = cached[h.name], nil
		}
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", h.name, h.from))
			continue
		}
		found[h.name] = p
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing programs: %s.\nRun the lab with `nix run .#lab`, or enter `nix develop` first, or put them on PATH (or in a directory given with --bin-dir), or build the upstream ones with `choria-lab build-upstream --sources DIR`", strings.Join(missing, ", "))
	}
	// the hosts get their own /tmp and /root, so programs there are invisible inside
	var hidden []string
	for name, p := range found {
		for _, d := range []string{"/tmp/", "/root/"} {
			if strings.HasPrefix(p, d) {
				hidden = append(hidden, fmt.Sprintf("%s (%s)", name, p))
			}
		}
	}
	if len(hidden) > 0 {
		sort.Strings(hidden)
		return nil, fmt.Errorf("programs under /tmp or /root cannot be run inside the lab's hosts, which have their own: %s; install them elsewhere (for example /usr/local/bin) or use `nix run .#lab`", strings.Join(hidden, ", "))
	}
	return &Programs{
		Choria: found["choria"], Provisioner: found["choria-provisioner"], AAASvc: found["aaasvc"],
		StreamReplicator: found["stream-replicator"], NATSServer: found["nats-server"], NATS: found["nats"],
		ProvisionHelper: found["choria-provision-helper"], Requests: found["requests"], Facts: found["choria-facts"], PluginPack: found["choria-plugin-pack"], PluginsServer: found["choria-plugins-server"],
		Lab: labBinary(self, dirs), Nsenter: found["nsenter"], Setpriv: found["setpriv"],
	}, nil
}

// labBinary is the choria-lab put on the hosts' PATH:
// this executable, unless it is something else (a test binary) and a
// choria-lab is installed beside the other programs.
func labBinary(self string, dirs []string) string {
	if filepath.Base(self) == "choria-lab" {
		return self
	}
	if p, err := lookup("choria-lab", dirs); err == nil {
		return p
	}
	return self
}

// cachedUpstream maps each upstream program's file name to its build in
// the cache of `choria-lab build-upstream`, where there is one.
func cachedUpstream() map[string]string {
	out := map[string]string{}
	pins, err := upstream.Load()
	if err != nil {
		return out
	}
	built, _, err := upstreambuild.Cached(pins, "")
	if err != nil {
		return out
	}
	for name, p := range built.Paths {
		out[pins.Binary(name)] = p
	}
	return out
}

func lookup(name string, dirs []string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return filepath.Abs(p)
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", err
	}
	// Choria re-executes itself by argv[0] after provisioning, so every
	// program is started by absolute path.
	return filepath.Abs(p)
}

// PathDirs is the PATH of shells and commands run inside the lab's hosts:
// the directories the programs live in, then tools, the PATH the lab was
// started with. No directory is assumed: on NixOS /bin and /usr/bin hold
// only sh and env, and the tools come from the PATH `nix run .#lab` gives.
func (p *Programs) PathDirs(tools string) string {
	seen := map[string]bool{}
	var dirs []string
	for _, prog := range []string{p.Choria, p.NATS, p.Provisioner, p.AAASvc, p.StreamReplicator, p.NATSServer, p.ProvisionHelper, p.PluginsServer, p.Lab, p.Nsenter} {
		d := filepath.Dir(prog)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range filepath.SplitList(tools) {
		if d != "" && filepath.IsAbs(d) && !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return strings.Join(dirs, ":")
}

// visibleOnNixOS refuses programs the hosts of a NixOS-like lab cannot
// see: those that run inside the hosts must not live in the directories
// it hides.
func (p *Programs) visibleOnNixOS() error {
	var hidden []string
	for _, prog := range []string{p.Choria, p.Provisioner, p.AAASvc, p.StreamReplicator, p.NATSServer, p.NATS,
		p.ProvisionHelper, p.Requests, p.Facts, p.PluginsServer, p.Setpriv} {
		for _, d := range []string{"/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"} {
			if strings.HasPrefix(prog, d) {
				hidden = append(hidden, prog)
			}
		}
	}
	if len(hidden) > 0 {
		return fmt.Errorf("--nixos-like hides /usr/bin and /usr/sbin from the hosts, so they could not run %s; put these programs in a directory given with --bin-dir", strings.Join(hidden, ", "))
	}
	return nil
}
