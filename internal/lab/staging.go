package lab

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kballard/go-shellquote"
	"github.com/reproducible-choria/deployment/agents/requests"
	"github.com/reproducible-choria/deployment/internal/atomicfile"
	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/machines"
	"github.com/reproducible-choria/deployment/topology"
)

// stageHosts gives every host fresh directories: servers start
// unprovisioned, holding nothing but provisioning.jwt and their machines.
func stageHosts(p *Plan, progs *Programs, profile string) error {
	l := p.Layout
	for _, d := range []string{filepath.Join(l.Dir, "hosts"), filepath.Join(l.Dir, "logs")} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("clearing %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(l.Docroot(), 0o755); err != nil {
		return fmt.Errorf("creating docroot: %w", err)
	}
	if p.NixOSLike {
		if err := prepareNixOSLike(l); err != nil {
			return err
		}
	}
	tm, err := p.Topology.Timing(profile)
	if err != nil {
		return err
	}
	machineData, err := requestsAgentManifest(p, progs)
	if err != nil {
		return err
	}
	server := p.Topology.ServerPaths
	facts, err := machines.RenderFacts(machines.FactsOptions{Interval: tm.FactsInterval.Duration, Output: server.FactsFile})
	if err != nil {
		return err
	}
	externalAgents, err := machines.RenderExternalAgents(machines.ExternalAgentsOptions{
		PluginsDirectory: server.AgentDir(), Interval: tm.PluginsInterval.Duration, ManageInterval: tm.PluginsManageInterval.Duration,
	})
	if err != nil {
		return err
	}
	provJWT, err := os.ReadFile(l.Credentials().ProvisioningJWT())
	if err != nil {
		return fmt.Errorf("reading provisioning token: %w", err)
	}
	// the requests agent reaches the plugins host, as the tour needs, and
	// reads and writes no file
	requestsPolicy := requests.PolicyConfig(requests.Config{AllowedHosts: []string{p.Topology.FQDN(p.Topology.MustHost(topology.RolePlugins).Name)}})
	// the client packs this into the plugin the walkthrough deploys
	checkChoria, err := machines.RenderCheckChoria(tm.ScoutCheckInterval.Duration)
	if err != nil {
		return err
	}

	for _, hp := range p.Hosts {
		name := hp.Host.Name
		dirs := []string{l.HostLogDir(name), l.HostStateDir(name), l.HostHome(name), l.Logs(name), l.HostConfigDir(name)}
		if hp.Host.Role == topology.RoleServer {
			dirs = append(dirs, l.HostEtcChoria(name))
		}
		for _, d := range dirs {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("preparing %s: %w", name, err)
			}
		}
		// files by their path inside the host
		var files []stagedFile
		add := func(inside string, data []byte, mode os.FileMode) {
			files = append(files, stagedFile{inside, data, mode})
		}
		var links []stagedFile
		var insideDirs []string
		switch hp.Host.Role {
		case topology.RoleServer:
			etc := p.Topology.Roles[topology.RoleServer].ConfigDir
			add(path.Join(etc, "provisioning.jwt"), provJWT, 0o600)
			add(path.Join(server.MachineDir, machines.Facts, "machine.yaml"), facts, 0o644)
			add(path.Join(server.MachineDir, machines.ExternalAgents, "machine.yaml"), externalAgents, 0o644)
			add(path.Join(server.MachineDir, machines.ExternalAgents, "machine_data.json"), machineData, 0o644)
			add(path.Join(etc, "plugin.d", requests.Name), requestsPolicy, 0o644)
			// the facts machine runs ./gather
			links = append(links, stagedFile{path: path.Join(server.MachineDir, machines.Facts, "gather"), data: []byte(progs.Facts)})
			// a provisioned server logs errors until its agent directory exists
			insideDirs = append(insideDirs, server.AgentDir())
		case topology.RoleNATS:
			conf, err := json.MarshalIndent(NATSSettings(p.Topology, hp.Host), "", "  ")
			if err != nil {
				return err
			}
			add(path.Join(p.Topology.Roles[topology.RoleNATS].ConfigDir, NATSConfigFile), conf, 0o644)
		}
		for _, f := range files {
			if err := stage(hp, f, false); err != nil {
				return err
			}
		}
		for _, f := range links {
			if err := stage(hp, f, true); err != nil {
				return err
			}
		}
		for _, d := range insideDirs {
			on, err := hp.MachinePath(d)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(on, 0o755); err != nil {
				return fmt.Errorf("preparing %s: %w", name, err)
			}
		}
		// outside the binds: the host's own /root and /etc overlay
		if hp.Host.Role == topology.RoleClient {
			if err := writeFile(filepath.Join(l.HostHome(name), "plugins", machines.CheckChoria, "machine.yaml"), checkChoria, 0o644); err != nil {
				return fmt.Errorf("preparing %s: %w", name, err)
			}
		}
		// login shells reset PATH from /etc/profile; put the lab's programs back
		if err := writeFile(filepath.Join(netlab.UpperDir(l.NSRoot(name), "/etc"), "profile.d", "choria-lab.sh"), profileScript(p.Env), 0o644); err != nil {
			return fmt.Errorf("preparing %s: %w", name, err)
		}
		if err := addAccount(l.NSRoot(name), hp); err != nil {
			return fmt.Errorf("preparing %s: %w", name, err)
		}
	}
	return nil
}

// stagedFile is a file the lab puts in a host before it starts, by its
// path inside the host; a link's data is its target.
type stagedFile struct {
	path string
	data []byte
	mode os.FileMode
}

// stage writes f where the host's bind mounts show it.
func stage(hp HostPlan, f stagedFile, link bool) error {
	on, err := hp.MachinePath(f.path)
	if err != nil {
		return err
	}
	if link {
		if err := os.MkdirAll(filepath.Dir(on), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(string(f.data), on); err != nil {
			return fmt.Errorf("preparing %s: %w", hp.Host.Name, err)
		}
		return nil
	}
	if err := writeFile(on, f.data, f.mode); err != nil {
		return fmt.Errorf("preparing %s: %w", hp.Host.Name, err)
	}
	return nil
}

func writeFile(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, mode)
}

// prepareNixOSLike makes what a NixOS-like lab binds over /usr/bin and
// /usr/sbin: a directory with copies of sh and env, as NixOS has in /bin
// and /usr/bin, and an empty one. On a merged-/usr machine /bin and /sbin
// are links into them.
func prepareNixOSLike(l Layout) error {
	if err := os.RemoveAll(filepath.Dir(l.NixOSBin())); err != nil {
		return err
	}
	for _, d := range []string{l.NixOSBin(), l.Empty()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, tool := range []string{"/bin/sh", "/usr/bin/env"} {
		real, err := filepath.EvalSymlinks(tool)
		if err != nil {
			return fmt.Errorf("a NixOS-like lab needs %s: %w", tool, err)
		}
		b, err := os.ReadFile(real)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(l.NixOSBin(), filepath.Base(tool)), b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// addAccount creates the host's service user, as the NixOS module does:
// an entry in the host's own /etc/passwd and /etc/group (its /etc is an
// overlay of the machine's), and ownership of the role's configuration
// and state, which stay closed to others.
func addAccount(nsRoot string, hp HostPlan) error {
	a := hp.Account
	if a == nil {
		return nil
	}
	etc := netlab.UpperDir(nsRoot, "/etc")
	for file, line := range map[string]string{
		"passwd": fmt.Sprintf("%s:x:%d:%d:%s service (choria-lab):%s:/usr/sbin/nologin\n", a.Name, a.UID, a.GID, a.Name, a.Home),
		"group":  fmt.Sprintf("%s:x:%d:\n", a.Name, a.GID),
	} {
		machine, err := os.ReadFile(filepath.Join("/etc", file))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(etc, 0o755); err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(etc, file), append(machine, line...), 0o644); err != nil {
			return err
		}
	}
	for _, dir := range hp.Owned {
		if err := chownTree(dir, a.UID, a.GID); err != nil {
			return fmt.Errorf("handing %s to %s: %w", dir, a.Name, err)
		}
		if err := os.Chmod(dir, 0o750); err != nil {
			return err
		}
	}
	return nil
}

func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// profileScript exports the lab's environment to login shells.
func profileScript(env []string) []byte {
	var b strings.Builder
	b.WriteString("# Written by choria-lab: the programs of the lab.\n")
	for _, e := range env {
		if k, v, ok := strings.Cut(e, "="); ok && k == "PATH" {
			fmt.Fprintf(&b, "export PATH=%s\n", shellquote.Join(v))
		}
	}
	return []byte(b.String())
}

// requestsAgentManifest packs the requests agent into the docroot and
// returns the external agents machine's signed machine_data.json. It runs
// choria-plugin-pack, the packager the Nix build uses, in its own process:
// archiving a 10 MB binary would otherwise set the supervisor's peak memory.
func requestsAgentManifest(p *Plan, progs *Programs) ([]byte, error) {
	t := p.Topology
	base := "http://" + t.FQDN(t.MustHost(topology.RolePlugins).Name)
	if t.Ports.PluginsHTTP != 80 {
		base += ":" + strconv.Itoa(t.Ports.PluginsHTTP)
	}
	work := filepath.Join(p.Layout.Dir, "plugins")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, err
	}
	manifest := filepath.Join(work, "server-plugins.json")
	machineData := filepath.Join(work, "machine_data.json")
	for _, argv := range [][]string{
		{progs.PluginPack, "requests", "--binary", progs.Requests, "--out-dir", p.Layout.Docroot(), "--base-url", base, "--manifest", manifest},
		{progs.PluginPack, "sign", manifest, p.Layout.Credentials().PluginSignerSeed(), "--output", filepath.Join(work, "server-plugins.spec.json"), "--machine-data", machineData},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("packing the requests agent (%s %s): %w: %s", filepath.Base(argv[0]), argv[1], err, strings.TrimSpace(string(out)))
		}
	}
	b, err := os.ReadFile(machineData)
	if err != nil {
		return nil, fmt.Errorf("reading the requests agent's machine data: %w", err)
	}
	return b, nil
}
