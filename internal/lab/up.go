package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/reproducible-choria/deployment/agents/requests"
	"github.com/reproducible-choria/deployment/internal/atomicfile"
	"github.com/reproducible-choria/deployment/internal/bootstrap"
	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/machines"
	"github.com/reproducible-choria/deployment/topology"
)

// Options control `choria-lab up`.
type Options struct {
	Dir string
	// Servers overrides the topology's server count when positive.
	Servers int
	// ReferenceTimings keeps the reference's intervals instead of the lab's short ones.
	ReferenceTimings bool
	TopologyFile     string
	BinDirs          []string
	// ToolPath is the hosts' PATH after the programs' directories; the
	// lab's own PATH when empty.
	ToolPath string
	// NixOSLike hides the machine's /usr/bin and /usr/sbin in every host
	// but for sh and env, as on NixOS: the lab and the tour must then find
	// everything on ToolPath.
	NixOSLike bool
	// Timeout bounds the whole bring-up.
	Timeout time.Duration
	Out     io.Writer
}

// Running is a lab that is up.
type Running struct {
	Plan       *Plan
	net        *netlab.Lab
	supervisor *Supervisor
	state      *State
	out        io.Writer
	lock       *os.File
	stateMu    sync.Mutex
	down       bool
	// Timings of the phases of bring-up, for the benchmark.
	Timings PhaseTimes
}

// PhaseTimes are the durations from the start of Up to each milestone.
type PhaseTimes struct {
	Network, Broker, Services, Provisioned time.Duration
}

// startupDeaths is how often a service may die while the lab comes up
// before the bring-up gives up on it.
const startupDeaths = 3

// Up builds the whole deployment and returns once every server is provisioned.
// On any failure, or when ctx ends first, everything it started is torn down.
func Up(ctx context.Context, o Options) (_ *Running, err error) {
	start := time.Now()
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, "choria-lab: "+format+"\n", args...) }

	// everything that can fail without touching the system comes first
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w (for example `sudo choria-lab up`, or `sudo nix run .#lab`); nothing was changed", netlab.ErrNotRoot)
	}
	progs, err := FindPrograms(o.BinDirs)
	if err != nil {
		return nil, err
	}
	if err := netlab.Preflight(); err != nil {
		return nil, fmt.Errorf("%w; nothing was changed", err)
	}
	if o.TopologyFile != "" {
		// recorded in lab.json for commands run from other directories
		if o.TopologyFile, err = filepath.Abs(o.TopologyFile); err != nil {
			return nil, fmt.Errorf("topology file: %w", err)
		}
	}
	topo, err := loadTopology(o.TopologyFile, o.Servers)
	if err != nil {
		return nil, err
	}
	layout := Layout{Dir: o.Dir}
	toolPath := o.ToolPath
	if toolPath == "" {
		toolPath = os.Getenv("PATH")
	}
	plan, err := NewPlan(PlanOptions{Topology: topo, Layout: layout, Programs: progs, ToolPath: toolPath, NixOSLike: o.NixOSLike})
	if err != nil {
		return nil, err
	}
	if o.NixOSLike {
		if err := progs.visibleOnNixOS(); err != nil {
			return nil, err
		}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	lock, err := lockDir(layout)
	if err != nil {
		return nil, err
	}
	r := &Running{Plan: plan, out: out, lock: lock}
	defer func() {
		if err != nil {
			r.Down()
			if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%w (bring-up did not finish within %s)", err, timeout)
			}
		}
	}()

	timings := topology.TimingsLab
	if o.ReferenceTimings {
		timings = topology.TimingsReference
	}
	res, err := bootstrap.Run(bootstrap.Options{
		Topology: topo, Out: layout.Credentials(), Timings: timings,
		Render: true, HelperCommand: progs.ProvisionHelper,
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrapping credentials: %w", err)
	}
	say("credentials in %s (%d new, %d kept; configuration rendered with %s timings)", layout.Credentials(), len(res.Created), len(res.Kept), timings)

	if err := prepareHosts(plan, progs, timings); err != nil {
		return nil, err
	}

	netLab, err := netlab.Up(ctx, netlab.Spec{Networks: plan.Networks, Hosts: specs(plan)}, nil)
	if err != nil {
		return nil, fmt.Errorf("building the network: %w", err)
	}
	r.net = netLab
	r.Timings.Network = time.Since(start)
	say("network up: %d hosts on %d networks, sealed from this machine's (%s)", len(plan.Hosts), len(plan.Networks), round(r.Timings.Network))

	r.supervisor = NewSupervisor(layout, plan.Env, progs.Setpriv, func(format string, args ...any) { say(format, args...) })
	r.state = &State{PID: os.Getpid(), Started: start, Env: plan.Env, TopologyFile: o.TopologyFile}
	for _, hp := range plan.Hosts {
		h, _ := netLab.Host(hp.Host.Name)
		addrs := map[string]string{}
		for n, a := range hp.Host.Addresses {
			addrs[n] = a.String()
		}
		r.state.Hosts = append(r.state.Hosts, HostState{Name: hp.Host.Name, Role: hp.Host.Role, FQDN: hp.FQDN, Addresses: addrs, AnchorPID: h.AnchorPID()})
	}
	if err := r.saveState(); err != nil {
		return nil, err
	}
	go r.publishChanges()

	// broker first, then everything that talks to it, then the servers
	if err := r.startRole(ctx, topology.RoleBroker); err != nil {
		return nil, err
	}
	r.Timings.Broker = time.Since(start)
	say("broker ready (%s)", round(r.Timings.Broker))
	var services []string
	for _, role := range []string{topology.RoleNATS, topology.RolePlugins, topology.RoleProvisioner, topology.RoleAAA, topology.RoleReplicator} {
		if err := r.startRole(ctx, role); err != nil {
			return nil, err
		}
		services = append(services, role)
	}
	r.Timings.Services = time.Since(start)
	say("services ready: %s (%s)", strings.Join(services, ", "), round(r.Timings.Services))

	if err := r.startRole(ctx, topology.RoleServer); err != nil {
		return nil, err
	}
	if err := r.waitProvisioned(ctx, say); err != nil {
		return nil, err
	}
	r.Timings.Provisioned = time.Since(start)
	r.state.Ready = true
	if err := r.saveState(); err != nil {
		return nil, err
	}
	return r, nil
}

func loadTopology(file string, servers int) (*topology.Topology, error) {
	t, err := topology.LoadOrDefault(file)
	if err != nil {
		return nil, err
	}
	if servers > 0 {
		return t.WithServers(servers)
	}
	return t, nil
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

func specs(p *Plan) []netlab.HostSpec {
	out := make([]netlab.HostSpec, 0, len(p.Hosts))
	for _, h := range p.Hosts {
		out = append(out, h.Spec)
	}
	return out
}

// lockDir makes sure one lab at a time uses a directory.
func lockDir(l Layout) (*os.File, error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating lab directory: %w", err)
	}
	f, err := os.OpenFile(l.Lock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lab lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("a lab is already running in %s (stop it with `choria-lab down`)", l.Dir)
	}
	return f, nil
}

// prepareHosts gives every host fresh directories: servers start
// unprovisioned, holding nothing but provisioning.jwt and their machines.
func prepareHosts(p *Plan, progs *Programs, timings string) error {
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
	tm, err := p.Topology.Timing(timings)
	if err != nil {
		return err
	}
	machineData, err := requestsAgentManifest(p, progs)
	if err != nil {
		return err
	}
	facts, err := machines.RenderFacts(machines.FactsOptions{Interval: tm.FactsInterval.Duration})
	if err != nil {
		return err
	}
	serverRole := p.Topology.Roles[topology.RoleServer]
	agentDir := filepath.Join(serverRole.StateDir, "plugins", "mcollective", "agent")
	externalAgents, err := machines.RenderExternalAgents(machines.ExternalAgentsOptions{
		PluginsDirectory: agentDir, Interval: tm.PluginsInterval.Duration, ManageInterval: tm.PluginsManageInterval.Duration,
	})
	if err != nil {
		return err
	}
	provJWT, err := os.ReadFile(filepath.Join(l.Credentials(), filepath.FromSlash(bootstrap.FileProvisioningJWT)))
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
		dirs := []string{l.HostLog(name), l.HostState(name), l.HostHome(name), l.Logs(name), l.HostConfig(name)}
		if hp.Host.Role == topology.RoleServer {
			dirs = append(dirs, l.HostEtcChoria(name))
		}
		for _, d := range dirs {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("preparing %s: %w", name, err)
			}
		}
		var files []struct {
			path string
			data []byte
			mode os.FileMode
		}
		add := func(path string, data []byte, mode os.FileMode) {
			files = append(files, struct {
				path string
				data []byte
				mode os.FileMode
			}{path, data, mode})
		}
		// login shells reset PATH from /etc/profile; put the lab's programs back
		add(filepath.Join(netlab.UpperDir(l.NSRoot(name), "/etc"), "profile.d", "choria-lab.sh"), profileScript(p.Env), 0o644)
		switch hp.Host.Role {
		case topology.RoleServer:
			etc := l.HostEtcChoria(name)
			add(filepath.Join(etc, "provisioning.jwt"), provJWT, 0o600)
			add(filepath.Join(etc, "machine", machines.Facts, "machine.yaml"), facts, 0o644)
			add(filepath.Join(etc, "machine", machines.ExternalAgents, "machine.yaml"), externalAgents, 0o644)
			add(filepath.Join(etc, "machine", machines.ExternalAgents, "machine_data.json"), machineData, 0o644)
			add(filepath.Join(etc, "plugin.d", requests.Name), requestsPolicy, 0o644)
			// a provisioned server logs errors until its agent directory exists
			if err := os.MkdirAll(filepath.Join(l.HostState(name), "plugins", "mcollective", "agent"), 0o755); err != nil {
				return err
			}
		case topology.RoleClient:
			add(filepath.Join(l.HostHome(name), "plugins", machines.CheckChoria, "machine.yaml"), checkChoria, 0o644)
		case topology.RoleNATS:
			conf, err := json.MarshalIndent(NATSSettings(p.Topology, hp.Host), "", "  ")
			if err != nil {
				return err
			}
			add(filepath.Join(l.HostConfig(name), NATSConfigFile), conf, 0o644)
		}
		for _, f := range files {
			if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
				return fmt.Errorf("preparing %s: %w", name, err)
			}
		}
		if err := addAccount(l.NSRoot(name), hp); err != nil {
			return fmt.Errorf("preparing %s: %w", name, err)
		}
		if hp.Host.Role == topology.RoleServer {
			gather := filepath.Join(l.HostEtcChoria(name), "machine", machines.Facts, "gather")
			if err := os.Symlink(progs.Facts, gather); err != nil {
				return fmt.Errorf("preparing %s: %w", name, err)
			}
		}
	}
	return nil
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
		{progs.PluginPack, "sign", manifest, filepath.Join(p.Layout.Credentials(), filepath.FromSlash(bootstrap.FilePluginSignerSeed)), "--output", filepath.Join(work, "server-plugins.spec.json"), "--machine-data", machineData},
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

// startRole starts every process of the role's hosts and waits until they serve.
func (r *Running) startRole(ctx context.Context, role string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(r.Plan.Hosts))
	for _, hp := range r.Plan.Hosts {
		if hp.Host.Role != role {
			continue
		}
		h, ok := r.net.Host(hp.Host.Name)
		if !ok {
			return fmt.Errorf("host %s is missing from the network", hp.Host.Name)
		}
		for _, p := range hp.Processes {
			sp, err := r.supervisor.Start(h, p)
			if err != nil {
				return err
			}
			if p.Ready == "" {
				continue
			}
			wg.Add(1)
			go func(p Process) {
				defer wg.Done()
				// a program that keeps dying will not serve: say so now,
				// not when the whole bring-up times out
				wctx, cancel := context.WithCancelCause(ctx)
				defer cancel(nil)
				go func() {
					for wctx.Err() == nil {
						if n := sp.Restarts(); n >= startupDeaths {
							cancel(fmt.Errorf("it died %d times", n))
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}()
				if err := waitTCP(wctx, h, p.Ready); err != nil {
					if cause := context.Cause(wctx); cause != nil && ctx.Err() == nil {
						err = cause
					}
					errs <- fmt.Errorf("%s on %s did not start serving on %s: %w (see %s)", p.Name, hp.Host.Name, p.Ready, err, r.Plan.Layout.ProcessLog(hp.Host.Name, p.Name))
				}
			}(p)
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func waitTCP(ctx context.Context, h *netlab.Host, addr string) error {
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := h.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Provisioned tells whether a server holds the configuration and token the
// provisioner gave it.
func (l Layout) Provisioned(server string) bool {
	etc := l.HostEtcChoria(server)
	if _, err := os.Stat(filepath.Join(etc, "server.jwt")); err != nil {
		return false
	}
	conf, err := os.ReadFile(filepath.Join(etc, "server.conf"))
	return err == nil && strings.Contains(string(conf), "\nidentity=")
}

func (r *Running) waitProvisioned(ctx context.Context, say func(string, ...any)) error {
	var servers []string
	for _, hp := range r.Plan.Hosts {
		if hp.Host.Role == topology.RoleServer {
			servers = append(servers, hp.Host.Name)
		}
	}
	last := -1
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n := 0
		var waiting []string
		for _, s := range servers {
			if r.Plan.Layout.Provisioned(s) {
				n++
			} else {
				waiting = append(waiting, s)
			}
		}
		if n != last {
			say("servers provisioned %d of %d", n, len(servers))
			last = n
		}
		if n == len(servers) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d servers were not provisioned (%s): see the provisioner's log %s", len(waiting), len(servers), strings.Join(waiting, ", "), r.Plan.Layout.ProcessLog(r.Plan.Topology.MustHost(topology.RoleProvisioner).Name, "provisioner"))
		case <-tick.C:
		}
	}
}

func (r *Running) saveState() error {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if r.down {
		return nil
	}
	if r.supervisor != nil {
		snaps := r.supervisor.Snapshots()
		for i := range r.state.Hosts {
			r.state.Hosts[i].Processes = nil
			for _, s := range snaps {
				if s.Host == r.state.Hosts[i].Name {
					r.state.Hosts[i].Processes = append(r.state.Hosts[i].Processes, s)
				}
			}
		}
	}
	return writeState(r.Plan.Layout.State(), r.state)
}

// publishChanges keeps lab.json current as processes restart.
func (r *Running) publishChanges() {
	for {
		select {
		case <-r.supervisor.Stopped():
			return
		case <-r.supervisor.Changed():
			if err := r.saveState(); err != nil {
				fmt.Fprintf(r.out, "choria-lab: %v\n", err)
			}
		}
	}
}

// Down stops every process, removes the namespaces, bridges and mounts,
// and releases the directory. It is safe to call more than once.
func (r *Running) Down() {
	if r.supervisor != nil {
		r.supervisor.Stop()
	}
	if r.net != nil {
		_ = r.net.Close()
	}
	r.stateMu.Lock()
	r.down = true
	r.stateMu.Unlock()
	removeState(r.Plan.Layout)
	if r.lock != nil {
		r.lock.Close()
		r.lock = nil
	}
}
