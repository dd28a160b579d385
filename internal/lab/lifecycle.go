package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/reproducible-choria/deployment/internal/bootstrap"
	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/reproducible-choria/deployment/topology"
)

// Options control `choria-lab up`.
type Options struct {
	Dir string
	// Servers overrides the topology's server count when positive.
	Servers int
	// Brokers overrides the topology's broker count when positive: more
	// than one is a cluster.
	Brokers int
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
	// StartWindow is how many servers may be between their first start
	// and answering at once: the rest wait to start. Zero is
	// DefaultStartWindow, negative all at once.
	StartWindow int
	// Timeout bounds the whole bring-up; when zero, it grows with the
	// fleet (DefaultTimeout).
	Timeout time.Duration
	// Log receives the bring-up's progress and the supervisor's reports;
	// nothing is logged when nil.
	Log *slog.Logger
}

// Running is a lab that is up.
type Running struct {
	Plan       *Plan
	progs      *Programs
	net        *netlab.Lab
	supervisor *supervisor.Supervisor
	state      *State
	log        *slog.Logger
	lock       *os.File
	servers    []*serverRun
	stateMu    sync.Mutex
	down       bool
	// Phases are the times bring-up took, for the summary and the benchmark.
	Phases PhaseTimes
}

// PhaseTimes are the durations from the start of Up to each milestone.
type PhaseTimes struct {
	Network, Broker, Services, Provisioned time.Duration
	// Answering: every server runs provisioned, connected to the broker.
	Answering time.Duration
}

// startupDeaths is how often a service may die while the lab comes up
// before the bring-up gives up on it.
const startupDeaths = 3

// DefaultTimeout bounds the bring-up of a lab of servers: a fixed part for
// the services, and a part a server, about three times what a server
// takes to be provisioned here.
func DefaultTimeout(servers int) time.Duration {
	return 3*time.Minute + time.Duration(servers)*600*time.Millisecond
}

// Up builds the whole deployment and returns once every server is
// provisioned and connected with its provisioned identity.
// On any failure, or when ctx ends first, everything it started is torn down.
func Up(ctx context.Context, o Options) (_ *Running, err error) {
	start := time.Now()
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

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
	topo, err := loadTopology(o.TopologyFile, o.Servers, o.Brokers)
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
		timeout = DefaultTimeout(topo.Servers.Count)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	lock, err := lockDir(layout)
	if err != nil {
		return nil, err
	}
	r := &Running{Plan: plan, progs: progs, log: log, lock: lock}
	defer func() {
		if err != nil {
			r.Down()
			if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%w (bring-up did not finish within %s)", err, timeout)
			}
		}
	}()

	profile := topology.TimingsLab
	if o.ReferenceTimings {
		profile = topology.TimingsReference
	}
	res, err := bootstrap.Run(bootstrap.Options{
		Topology: topo, Out: layout.Credentials().Dir, Timings: profile,
		Render: true, HelperCommand: progs.ProvisionHelper,
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrapping credentials: %w", err)
	}
	log.Info(fmt.Sprintf("credentials in %s (%d new, %d kept; configuration rendered with %s timings)", layout.Credentials().Dir, len(res.Created), len(res.Kept), profile))

	if err := stageHosts(plan, progs, profile); err != nil {
		return nil, err
	}

	netLab, err := netlab.Up(ctx, netlab.Spec{Networks: plan.Networks, Hosts: specs(plan)}, nil)
	if err != nil {
		return nil, fmt.Errorf("building the network: %w", err)
	}
	r.net = netLab
	r.Phases.Network = time.Since(start)
	log.Info(fmt.Sprintf("network up: %d hosts on %d networks, sealed from this machine's (%s)", len(plan.Hosts), len(plan.Networks), round(r.Phases.Network)))

	r.supervisor = supervisor.New(log)
	r.state = &State{PID: os.Getpid(), Started: start, Env: plan.Env, TopologyFile: o.TopologyFile}
	for _, hp := range plan.Hosts {
		h, _ := netLab.Host(hp.Host.Name)
		addrs := map[string]string{}
		for n, a := range hp.Host.Addresses {
			addrs[n] = a.String()
		}
		hs := HostState{Name: hp.Host.Name, Role: hp.Host.Role, FQDN: hp.FQDN, Addresses: addrs, AnchorPID: h.AnchorPID()}
		if hp.Host.Role == topology.RoleServer {
			if hs.StatusFile, err = hp.MachinePath(topo.ServerPaths.StatusFile); err != nil {
				return nil, err
			}
		}
		r.state.Hosts = append(r.state.Hosts, hs)
	}
	if err := r.saveState(); err != nil {
		return nil, err
	}
	go r.publishChanges()

	// broker first, then everything that talks to it, then the servers
	if err := r.startRole(ctx, topology.RoleBroker); err != nil {
		return nil, err
	}
	r.Phases.Broker = time.Since(start)
	if topo.Clustered() {
		log.Info(fmt.Sprintf("brokers ready: a cluster of %d, streams replicated %d times (%s)", topo.Brokers.Count, topo.StreamReplicas(), round(r.Phases.Broker)))
	} else {
		log.Info(fmt.Sprintf("broker ready (%s)", round(r.Phases.Broker)))
	}
	var services []string
	for _, role := range []string{topology.RoleNATS, topology.RolePlugins, topology.RoleProvisioner, topology.RoleAAA, topology.RoleReplicator} {
		if err := r.startRole(ctx, role); err != nil {
			return nil, err
		}
		if role == topology.RoleNATS {
			if err := r.makeTargetStream(ctx); err != nil {
				return nil, err
			}
		}
		services = append(services, role)
	}
	r.Phases.Services = time.Since(start)
	log.Info(fmt.Sprintf("services ready: %s (%s)", strings.Join(services, ", "), round(r.Phases.Services)))

	window := o.StartWindow
	if window == 0 {
		window = DefaultStartWindow()
	}
	if err := r.bringUpServers(ctx, start, window); err != nil {
		return nil, err
	}
	if topo.Clustered() {
		if err := r.waitSystemStreams(ctx); err != nil {
			return nil, err
		}
		log.Info(fmt.Sprintf("the cluster's system streams are made (%s)", round(time.Since(start))))
		r.Phases.Answering = time.Since(start)
	}
	r.state.Ready = true
	if err := r.saveState(); err != nil {
		return nil, err
	}
	return r, nil
}

func loadTopology(file string, servers, brokers int) (*topology.Topology, error) {
	t, err := topology.LoadOrDefault(file)
	if err != nil {
		return nil, err
	}
	if servers > 0 {
		if t, err = t.WithServers(servers); err != nil {
			return nil, err
		}
	}
	if brokers > 0 {
		if t, err = t.WithBrokers(brokers); err != nil {
			return nil, err
		}
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
				r.log.Error(err.Error())
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

// State is the running lab's published state.
func (r *Running) State() *State {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	c := *r.state
	return &c
}
