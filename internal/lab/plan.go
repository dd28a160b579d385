package lab

import (
	"bytes"
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/reproducible-choria/deployment/internal/bootstrap"
	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/reproducible-choria/deployment/topology"
)

// Process is one supervised program on a host.
type Process struct {
	Name string
	Argv []string
	// Account is the user it runs as, its role's (the NixOS module's);
	// root when nil.
	Account *Account
	// Capabilities are the only ones it keeps (as AmbientCapabilities and
	// CapabilityBoundingSet of its unit), when it does not run as root.
	Capabilities []string
	// Env is added to the lab's environment: its role's Go runtime
	// settings, which the NixOS unit and the image set too.
	Env []string
	// Ready is the TCP address dialled from inside the host to tell the
	// program is serving; empty for programs whose readiness is checked
	// otherwise (servers: their status file).
	Ready string
}

// program is what the supervisor runs for p on host: its command line
// with its account's environment, logging to the host's process log.
func (p Process) program(l Layout, host string, env []string, setpriv string) supervisor.Program {
	env = slices.Concat(env, p.Env)
	if p.Account != nil {
		env = append(env, p.Account.Env()...)
	}
	return supervisor.Program{Name: p.Name, Argv: p.commandLine(setpriv), Env: env, Log: l.ProcessLog(host, p.Name)}
}

// commandLine is the process's argv, run through setpriv as its account
// when it has one: the user and group of its unit, no supplementary
// groups, no new privileges, only its unit's capabilities, and its
// parent-death signal restored after the change of user (the kernel
// clears it), so it still dies with the lab.
func (p Process) commandLine(setpriv string) []string {
	a := p.Account
	if a == nil {
		return p.Argv
	}
	bounding := "-all"
	var caps []string
	for _, c := range p.Capabilities {
		bounding += ",+" + c
		caps = append(caps, "+"+c)
	}
	args := []string{setpriv,
		"--reuid=" + strconv.Itoa(a.UID), "--regid=" + strconv.Itoa(a.GID), "--clear-groups",
		"--pdeathsig=keep", "--no-new-privs", "--bounding-set=" + bounding}
	if len(caps) > 0 {
		list := strings.Join(caps, ",")
		args = append(args, "--inh-caps="+list, "--ambient-caps="+list)
	}
	return append(append(args, "--"), p.Argv...)
}

// HostPlan is everything the lab does for one host.
type HostPlan struct {
	Host      topology.Host
	FQDN      string
	Spec      netlab.HostSpec
	Processes []Process
	// Account is the role's service user, nil for root; it owns Owned,
	// the machine-side directories of the role's configuration and state.
	Account *Account
	Owned   []string
}

// Account is a role's service user as the lab creates it in the host's
// /etc/passwd: the topology's name, with ids the lab picks (NixOS
// allocates its own; nothing depends on the numbers).
type Account struct {
	Name     string
	UID, GID int
	Home     string
}

// firstServiceID is the uid and gid of the first role's service user;
// the others follow in topology.Roles() order.
const firstServiceID = 64100

// roleAccount is the role's service user, or nil when it runs as root.
func roleAccount(roleName string, role topology.Role) *Account {
	if role.User == "" || role.User == "root" {
		return nil
	}
	id := firstServiceID + slices.Index(topology.Roles(), roleName)
	return &Account{Name: role.User, UID: id, GID: id, Home: role.StateDir}
}

// Env is the account's part of a service's environment, as systemd sets
// it for User=.
func (a *Account) Env() []string {
	return []string{"USER=" + a.Name, "LOGNAME=" + a.Name, "HOME=" + a.Home}
}

// Plan is the whole lab, in start-up order.
type Plan struct {
	Topology *topology.Topology
	Layout   Layout
	Hosts    []HostPlan
	Networks []netlab.Network
	Env      []string
	// NixOSLike: the hosts see no tools of the machine's (PlanOptions).
	NixOSLike bool
}

// PlanOptions are the choices a plan depends on.
type PlanOptions struct {
	Topology *topology.Topology
	Layout   Layout
	Programs *Programs
	// ToolPath is where the hosts' shells find their tools (sh, grep, tar,
	// …), after the programs' directories: the lab's own PATH.
	ToolPath string
	// NixOSLike hides the machine's tools from the hosts (Options.NixOSLike).
	NixOSLike bool
}

// NewPlan lays the topology out as hosts, mounts and processes.
func NewPlan(o PlanOptions) (*Plan, error) {
	t := o.Topology
	p := &Plan{
		Topology:  t,
		Layout:    o.Layout,
		NixOSLike: o.NixOSLike,
		Env:       []string{"PATH=" + o.Programs.PathDirs(o.ToolPath), "HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8"},
	}
	for _, n := range t.Networks {
		p.Networks = append(p.Networks, netlab.Network{Name: n.Name, Subnet: n.Subnet})
	}

	hosts := t.AllHosts()
	for _, r := range topology.Roles() {
		for _, h := range hosts {
			if h.Role != r {
				continue
			}
			hp, err := planHost(t, o, h, hosts)
			if err != nil {
				return nil, err
			}
			p.Hosts = append(p.Hosts, hp)
		}
	}
	return p, nil
}

func planHost(t *topology.Topology, o PlanOptions, h topology.Host, all []topology.Host) (HostPlan, error) {
	l := o.Layout
	pr := o.Programs
	role := t.Roles[h.Role]
	creds := l.Credentials().Role

	hp := HostPlan{Host: h, FQDN: t.FQDN(h.Name)}
	spec := netlab.HostSpec{
		Name:      h.Name,
		FQDN:      hp.FQDN,
		Root:      l.NSRoot(h.Name),
		HostsFile: HostsFile(t, h, all),
		Binds:     []netlab.Bind{{Source: l.HostLogDir(h.Name), Target: "/var/log"}},
	}
	for _, n := range t.Networks {
		if a, ok := h.Addresses[n.Name]; ok {
			spec.Addresses = append(spec.Addresses, netlab.Address{Network: n.Name, Addr: a})
		}
	}
	own := func(port int) string { return netip.AddrPortFrom(spec.Addresses[0].Addr, uint16(port)).String() }
	state := netlab.Bind{Source: l.HostStateDir(h.Name), Target: role.StateDir}
	config := func(dir string) netlab.Bind {
		return netlab.Bind{Source: creds(dir), Target: role.ConfigDir, ReadOnly: true}
	}

	switch h.Role {
	case topology.RoleBroker:
		spec.Binds = append(spec.Binds, config(bootstrap.BrokerDir(h.Name)), state)
		hp.Processes = []Process{{Name: "broker", Argv: []string{pr.Choria, "broker", "run", "--config", path.Join(role.ConfigDir, "broker.conf")}, Ready: own(t.Ports.BrokerClient)}}
	case topology.RoleNATS:
		// as nixpkgs' services.nats runs it: its settings as JSON, -c
		spec.Binds = append(spec.Binds, netlab.Bind{Source: l.HostConfigDir(h.Name), Target: role.ConfigDir, ReadOnly: true}, state)
		hp.Processes = []Process{{Name: "nats-server", Argv: []string{pr.NATSServer, "-c", path.Join(role.ConfigDir, NATSConfigFile)}, Ready: own(t.Ports.NATSClient)}}
	case topology.RolePlugins:
		spec.Binds = append(spec.Binds, netlab.Bind{Source: l.Docroot(), Target: role.StateDir, ReadOnly: true})
		hp.Processes = []Process{{Name: "plugins-server", Argv: []string{pr.PluginsServer, "--root", role.StateDir, "--listen", "0.0.0.0:" + strconv.Itoa(t.Ports.PluginsHTTP)}, Ready: own(t.Ports.PluginsHTTP)}}
	case topology.RoleProvisioner:
		spec.Binds = append(spec.Binds, config(bootstrap.DirProvisioner), state)
		hp.Processes = []Process{{Name: "provisioner", Argv: []string{pr.Provisioner, "--config", path.Join(role.ConfigDir, "provisioner.yaml"), "--choria-config", path.Join(role.ConfigDir, "choria.cfg")},
			Ready: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(t.Ports.ProvisionerMonitor)).String()}}
	case topology.RoleAAA:
		spec.Binds = append(spec.Binds, config(bootstrap.DirAAA), state)
		hp.Processes = []Process{{Name: "aaasvc", Argv: []string{pr.AAASvc, "run", "--config", path.Join(role.ConfigDir, "aaa.conf")}, Ready: own(t.Ports.AAALogin)}}
	case topology.RoleReplicator:
		spec.Binds = append(spec.Binds, config(bootstrap.DirReplicator), state)
		hp.Processes = []Process{{Name: "stream-replicator", Argv: []string{pr.StreamReplicator, "replicate", "--config", path.Join(role.ConfigDir, "sr.yaml")},
			Ready: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(t.Ports.ReplicatorMonitor)).String()}}
	case topology.RoleClient:
		// the reference keeps the plugin signer in ~/credentials and builds
		// plugins from ~/plugins into ~/htdocs, served by the plugins host
		spec.Binds = append(spec.Binds, config(bootstrap.DirClient),
			netlab.Bind{Source: creds(bootstrap.DirClient), Target: "/root/credentials", ReadOnly: true},
			netlab.Bind{Source: l.Docroot(), Target: "/root/htdocs"},
			state)
	case topology.RoleServer:
		spec.Binds = append(spec.Binds, netlab.Bind{Source: l.HostEtcChoria(h.Name), Target: role.ConfigDir}, state)
		hp.Processes = []Process{{Name: "server", Argv: []string{pr.Choria, "server", "run", "--config", path.Join(role.ConfigDir, "server.conf")}}}
	default:
		return hp, fmt.Errorf("host %s has role %q the lab cannot run", h.Name, h.Role)
	}
	for i := range hp.Processes {
		hp.Processes[i].Env = role.GoRuntimeEnv()
	}
	if acct := roleAccount(h.Role, role); acct != nil {
		hp.Account = acct
		for _, b := range spec.Binds {
			// the plugins host's docroot is the client's too, and stays root's
			if (b.Target == role.ConfigDir || b.Target == role.StateDir) && b.Source != l.Docroot() {
				hp.Owned = append(hp.Owned, b.Source)
			}
		}
		for i := range hp.Processes {
			hp.Processes[i].Account = acct
		}
	}
	if h.Role == topology.RolePlugins {
		// the unit's one capability: binding port 80
		for i := range hp.Processes {
			hp.Processes[i].Capabilities = []string{"net_bind_service"}
		}
	}
	if o.NixOSLike {
		spec.Binds = append(spec.Binds,
			netlab.Bind{Source: l.NixOSBin(), Target: "/usr/bin", ReadOnly: true},
			netlab.Bind{Source: l.Empty(), Target: "/usr/sbin", ReadOnly: true})
	}
	hp.Spec = spec
	return hp, nil
}

// MachinePath is where a path inside the host lives on this machine: below
// the source of the bind mount that holds it (the deepest one). Paths
// outside every bind are the host's own, in no directory the lab writes.
func (hp HostPlan) MachinePath(inside string) (string, error) {
	best := -1
	for i, b := range hp.Spec.Binds {
		if pathWithin(inside, b.Target) && (best < 0 || len(b.Target) > len(hp.Spec.Binds[best].Target)) {
			best = i
		}
	}
	if best < 0 {
		return "", fmt.Errorf("%s on %s is in no directory the lab binds", inside, hp.Host.Name)
	}
	b := hp.Spec.Binds[best]
	rel, err := filepath.Rel(b.Target, inside)
	if err != nil {
		return "", err
	}
	return filepath.Join(b.Source, rel), nil
}

func pathWithin(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && filepath.IsLocal(rel)
}

// HostsFile is a host's /etc/hosts: every lab host by the address on a
// network the two share, so names resolve to reachable addresses; hosts
// sharing no network resolve to their first address and stay unreachable,
// as in the reference.
func HostsFile(t *topology.Topology, self topology.Host, all []topology.Host) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, h := range all {
		addr, ok := sharedAddress(t, self, h)
		if !ok {
			addr = h.Addresses[h.SortedNetworks()[0]]
		}
		fmt.Fprintf(&b, "%s\t%s %s\n", addr, t.FQDN(h.Name), h.Name)
	}
	return b.Bytes()
}

func sharedAddress(t *topology.Topology, a, b topology.Host) (netip.Addr, bool) {
	for _, n := range t.Networks { // declaration order, so the choice is stable
		if _, ok := a.Addresses[n.Name]; !ok {
			continue
		}
		if addr, ok := b.Addresses[n.Name]; ok {
			return addr, true
		}
	}
	return netip.Addr{}, false
}

// NATSConfigFile is the NATS host's configuration, in its role's
// configuration directory.
const NATSConfigFile = "nats.conf"

// NATSSettings are the NATS host's settings as the lab profile gives
// nixpkgs' services.nats (serverName, port, jetstream, settings) and that
// module renders them (server_name, port, jetstream.store_dir at its
// dataDir, the role's state directory).
func NATSSettings(t *topology.Topology, h topology.Host) map[string]any {
	return map[string]any{
		"server_name": h.Name,
		"host":        "0.0.0.0",
		"port":        t.Ports.NATSClient,
		"http_port":   t.Ports.NATSMonitor,
		"jetstream":   map[string]any{"store_dir": t.Roles[topology.RoleNATS].StateDir},
	}
}

// NATSTargetStreamArgs is the natscli command line (after `nats`) that
// makes the Stream Replicator's target stream on the NATS host, or nil
// where the replicator makes it itself, as a copy of its source's
// configuration. A cluster's source has three replicas, which the one
// NATS server refuses ("replicas > 1 not supported in non-clustered
// mode"): there the stream is made first, with one replica, and the
// replicator uses it as it is.
func NATSTargetStreamArgs(t *topology.Topology) []string {
	if t.StreamReplicas() == 1 {
		return nil
	}
	s := t.Streams.Registration
	return []string{"--server", "nats://" + netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(t.Ports.NATSClient)).String(),
		"stream", "add", s.Name, "--subjects", strings.Join(s.Subjects, ","), "--storage", "file", "--replicas", "1", "--defaults"}
}
