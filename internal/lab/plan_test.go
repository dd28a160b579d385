package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/upstreambuild"
	"github.com/reproducible-choria/deployment/topology"
	"github.com/reproducible-choria/deployment/upstream"
)

func testPrograms() *Programs {
	return &Programs{
		Choria: "/opt/up/choria", Provisioner: "/opt/up/choria-provisioner", AAASvc: "/opt/up/aaasvc",
		StreamReplicator: "/opt/up/stream-replicator", NATSServer: "/opt/nats/nats-server", NATS: "/opt/nats/nats",
		ProvisionHelper: "/opt/ours/choria-provision-helper", Requests: "/opt/ours/requests", Facts: "/opt/ours/choria-facts", PluginPack: "/opt/ours/choria-plugin-pack",
		PluginsServer: "/opt/ours/choria-plugins-server", Lab: "/opt/ours/choria-lab", Nsenter: "/usr/bin/nsenter", Setpriv: "/usr/bin/setpriv",
	}
}

func testPlan(t *testing.T, servers int) *Plan {
	t.Helper()
	topo, err := topology.Default()
	require.NoError(t, err)
	topo, err = topo.WithServers(servers)
	require.NoError(t, err)
	p, err := NewPlan(PlanOptions{Topology: topo, Layout: Layout{Dir: "/lab"}, Programs: testPrograms()})
	require.NoError(t, err)
	return p
}

func host(t *testing.T, p *Plan, name string) HostPlan {
	t.Helper()
	for _, h := range p.Hosts {
		if h.Host.Name == name {
			return h
		}
	}
	t.Fatalf("no host %s", name)
	return HostPlan{}
}

func TestPlanOrderAndProcesses(t *testing.T) {
	p := testPlan(t, 3)
	var order []string
	for _, h := range p.Hosts {
		order = append(order, h.Host.Name)
	}
	assert.Equal(t, []string{"broker", "nats", "plugins", "provisioner", "aaa", "replicator", "client", "server1", "server2", "server3"}, order)

	broker := host(t, p, "broker")
	require.Len(t, broker.Processes, 1)
	assert.Equal(t, []string{"/opt/up/choria", "broker", "run", "--config", "/etc/choria-broker/broker.conf"}, broker.Processes[0].Argv)
	assert.Equal(t, "198.18.0.10:4222", broker.Processes[0].Ready, "the broker's first interface, on choria.servers")

	server := host(t, p, "server2")
	assert.Equal(t, []string{"/opt/up/choria", "server", "run", "--config", "/etc/choria/server.conf"}, server.Processes[0].Argv)
	assert.True(t, filepath.IsAbs(server.Processes[0].Argv[0]), "choria re-executes itself by argv[0]")
	assert.Equal(t, "server2.choria.local", server.Spec.FQDN)
	assert.Equal(t, []netlab.Address{{Network: "choria.servers", Addr: netip.MustParseAddr("198.18.1.2")}}, server.Spec.Addresses)

	assert.Empty(t, host(t, p, "client").Processes, "the client runs nothing until a user logs in")
	assert.Equal(t, "/opt/ours/choria-plugins-server", host(t, p, "plugins").Processes[0].Argv[0])
	assert.Contains(t, strings.Join(host(t, p, "provisioner").Processes[0].Argv, " "), "--choria-config /etc/choria-provisioner/choria.cfg")

	for _, e := range []string{"USER=root", "HOME=/root"} {
		assert.Contains(t, p.Env, e, "the provisioner and the choria client need it")
	}
	assert.True(t, strings.HasPrefix(p.Env[0], "PATH=/opt/up:/opt/nats:/opt/ours:"), p.Env[0])
}

func TestPlanMounts(t *testing.T) {
	p := testPlan(t, 2)
	binds := func(name string) map[string]netlab.Bind {
		m := map[string]netlab.Bind{}
		for _, b := range host(t, p, name).Spec.Binds {
			m[b.Target] = b
		}
		return m
	}

	b := binds("broker")
	assert.Equal(t, netlab.Bind{Source: "/lab/credentials/broker", Target: "/etc/choria-broker", ReadOnly: true}, b["/etc/choria-broker"])
	assert.Equal(t, "/lab/hosts/broker/state", b["/var/lib/choria-broker"].Source)
	assert.Equal(t, "/lab/hosts/broker/log", b["/var/log"].Source)

	s := binds("server1")
	assert.Equal(t, netlab.Bind{Source: "/lab/hosts/server1/etc-choria", Target: "/etc/choria"}, s["/etc/choria"], "servers write their own configuration")
	assert.Equal(t, "/lab/hosts/server1/state", s["/var/lib/choria"].Source)
	assert.NotEqual(t, binds("server2")["/etc/choria"].Source, s["/etc/choria"].Source, "every server has its own /etc/choria")

	c := binds("client")
	assert.Equal(t, netlab.Bind{Source: "/lab/credentials/client", Target: "/etc/choria", ReadOnly: true}, c["/etc/choria"])
	assert.Equal(t, "/lab/docroot", c["/root/htdocs"].Source, "the client builds plugins the plugins host serves")
	assert.Equal(t, "/lab/docroot", binds("plugins")["/var/lib/choria-plugins"].Source)

	for _, h := range p.Hosts {
		for _, bind := range h.Spec.Binds {
			assert.True(t, strings.HasPrefix(bind.Source, "/lab/"), "%s binds %s from outside the lab directory", h.Host.Name, bind.Source)
		}
		assert.Equal(t, "/lab/hosts/"+h.Host.Name+"/ns", h.Spec.Root)
	}
}

// A cluster's brokers each run as the one broker does, each with its own
// credentials at the role's paths, and are started together.
func TestPlanCluster(t *testing.T) {
	topo, err := topology.Default()
	require.NoError(t, err)
	single := testPlan(t, 2)
	assert.Nil(t, NATSTargetStreamArgs(single.Topology), "one broker: the replicator makes its target stream")

	topo, err = topo.Cluster()
	require.NoError(t, err)
	p, err := NewPlan(PlanOptions{Topology: topo, Layout: Layout{Dir: "/lab"}, Programs: testPrograms()})
	require.NoError(t, err)
	var order []string
	for _, h := range p.Hosts[:4] {
		order = append(order, h.Host.Name)
	}
	assert.Equal(t, []string{"broker", "broker2", "broker3", "nats"}, order)
	for _, name := range []string{"broker", "broker2", "broker3"} {
		h := host(t, p, name)
		assert.Equal(t, []string{"/opt/up/choria", "broker", "run", "--config", "/etc/choria-broker/broker.conf"}, h.Processes[0].Argv)
		assert.Contains(t, h.Spec.Binds, netlab.Bind{Source: "/lab/credentials/" + name, Target: "/etc/choria-broker", ReadOnly: true})
		assert.Equal(t, "choria-broker", h.Account.Name)
	}
	assert.Equal(t, []string{"--server", "nats://127.0.0.1:4222", "stream", "add", "CHORIA_REGISTRATION", "--subjects", "choria.node_metadata.>",
		"--storage", "file", "--replicas", "1", "--defaults"}, NATSTargetStreamArgs(topo), "the one NATS server cannot hold a copy of an R3 stream")
}

func TestHostsFileResolvesReachableAddresses(t *testing.T) {
	p := testPlan(t, 2)
	lookup := func(from, name string) string {
		for _, line := range strings.Split(string(host(t, p, from).Spec.HostsFile), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[1] == name {
				return f[0]
			}
		}
		t.Fatalf("%s cannot resolve %s", from, name)
		return ""
	}
	assert.Equal(t, "198.18.5.10", lookup("client", "broker.choria.local"), "the client reaches the broker on choria.clients")
	assert.Equal(t, "198.18.0.10", lookup("server1", "broker.choria.local"), "servers reach it on choria.servers")
	assert.Equal(t, "198.18.4.10", lookup("provisioner", "broker.choria.local"))
	assert.Equal(t, "198.18.5.30", lookup("client", "aaa.choria.local"))
	assert.Equal(t, "198.18.6.50", lookup("replicator", "nats.choria.local"))
	assert.Equal(t, "198.18.0.60", lookup("server2", "plugins.choria.local"))
	assert.Equal(t, "198.18.1.1", lookup("client", "server1.choria.local"), "names resolve even where the address is unreachable")
	assert.Contains(t, string(host(t, p, "nats").Spec.HostsFile), "127.0.0.1\tlocalhost")
}

func TestFindProgramsReportsEveryMissingOne(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"choria", "nats-server"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755))
	}
	t.Setenv("PATH", dir)
	t.Setenv(upstreambuild.CacheEnv, t.TempDir())
	_, err := FindPrograms(nil)
	require.Error(t, err)
	msg := err.Error()
	for _, n := range []string{"choria-provisioner", "aaasvc", "stream-replicator", "nats (nats-io/natscli)", "nix run .#lab", "nix develop"} {
		assert.Contains(t, msg, n)
	}
	assert.NotContains(t, msg, "choria (go-choria")
	assert.NotContains(t, msg, "nats-server")
}

// TestPlanAccounts: every role runs as its topology user, which is its
// NixOS module's, and owns its configuration and state; the server and
// the client stay root, as in the modules.
func TestPlanAccounts(t *testing.T) {
	p := testPlan(t, 1)
	for _, h := range p.Hosts {
		want := p.Topology.Roles[h.Host.Role].User
		for _, proc := range h.Processes {
			if want == "root" {
				assert.Nil(t, proc.Account, h.Host.Name)
				assert.Equal(t, proc.Argv, proc.commandLine("/usr/bin/setpriv"), "root runs its program directly")
				continue
			}
			require.NotNil(t, proc.Account, h.Host.Name)
			assert.Equal(t, want, proc.Account.Name)
			assert.Contains(t, proc.Account.Env(), "USER="+want)
			line := proc.commandLine("/usr/bin/setpriv")
			assert.Equal(t, proc.Argv, line[len(line)-len(proc.Argv):])
			assert.Contains(t, line, "--pdeathsig=keep", "it must still die with the lab")
			assert.Contains(t, line, "--no-new-privs")
		}
	}
	broker := host(t, p, "broker")
	assert.Equal(t, []string{"/lab/credentials/broker", "/lab/hosts/broker/state"}, broker.Owned)
	plugins := host(t, p, "plugins")
	assert.Empty(t, plugins.Owned, "the docroot is shared with the client")
	assert.Contains(t, plugins.Processes[0].commandLine("/usr/bin/setpriv"), "--ambient-caps=+net_bind_service")
	assert.Nil(t, host(t, p, "server1").Account)
}

// TestPlanGoRuntime: a role's Go runtime settings reach its process's
// environment, after the lab's and before its account's; other roles'
// processes do not get them.
func TestPlanGoRuntime(t *testing.T) {
	topo, err := topology.Default()
	require.NoError(t, err)
	role := topo.Roles[topology.RoleServer]
	role.GoRuntime = map[string]string{"GOMEMLIMIT": "64MiB", "GOGC": "200"}
	topo.Roles[topology.RoleServer] = role
	p, err := NewPlan(PlanOptions{Topology: topo, Layout: Layout{Dir: "/lab"}, Programs: testPrograms()})
	require.NoError(t, err)

	server := host(t, p, "server1").Processes[0].program(p.Layout, "server1", []string{"PATH=/bin"}, "/usr/bin/setpriv")
	assert.Equal(t, []string{"PATH=/bin", "GOGC=200", "GOMEMLIMIT=64MiB"}, server.Env)
	broker := host(t, p, "broker").Processes[0].program(p.Layout, "broker", []string{"PATH=/bin"}, "/usr/bin/setpriv")
	assert.Equal(t, append([]string{"PATH=/bin"}, host(t, p, "broker").Account.Env()...), broker.Env)
}

// TestFindProgramsInTheBuildCache: upstream programs on neither --bin-dir
// nor PATH are taken from the cache of `choria-lab build-upstream`.
func TestFindProgramsInTheBuildCache(t *testing.T) {
	// not under /tmp, which FindPrograms refuses
	base, err := os.MkdirTemp("/var/tmp", "find-programs-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	path, cache := filepath.Join(base, "path"), filepath.Join(base, "cache")
	require.NoError(t, os.Mkdir(path, 0o755))
	for _, n := range []string{"choria-provision-helper", "requests", "choria-facts", "choria-plugin-pack", "choria-plugins-server", "nsenter", "setpriv", "choria"} {
		require.NoError(t, os.WriteFile(filepath.Join(path, n), []byte("#!/bin/sh\n"), 0o755))
	}
	t.Setenv("PATH", path)
	t.Setenv(upstreambuild.CacheEnv, cache)
	pins, err := upstream.Load()
	require.NoError(t, err)
	for _, name := range pins.Programs() {
		p, err := upstreambuild.CachePath(pins, cache, name)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755))
	}
	progs, err := FindPrograms(nil)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(path, "choria"), progs.Choria, "PATH comes before the cache")
	assert.True(t, strings.HasPrefix(progs.Provisioner, cache+"/"), progs.Provisioner)
	assert.True(t, strings.HasPrefix(progs.NATS, cache+"/"), progs.NATS)
	assert.Contains(t, progs.PathDirs(""), filepath.Dir(progs.AAASvc))
}

func TestUpWithoutRootChangesNothing(t *testing.T) {
	if os.Geteuid() == 0 {
		// as root, run this same test again as nobody, from a copy nobody
		// may execute (go test's build directory is root's alone)
		self, err := os.ReadFile(os.Args[0])
		require.NoError(t, err)
		dir, err := os.MkdirTemp("", "nonroot-")
		require.NoError(t, err)
		defer os.RemoveAll(dir)
		require.NoError(t, os.Chmod(dir, 0o755))
		bin := filepath.Join(dir, "lab.test")
		require.NoError(t, os.WriteFile(bin, self, 0o755))
		cmd := exec.Command(bin, "-test.run", "^TestUpWithoutRootChangesNothing$", "-test.v")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "--- PASS: TestUpWithoutRootChangesNothing")
		return
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("choria-lab-nonroot-%d", os.Getpid()), "lab")
	_, err := Up(context.Background(), Options{Dir: dir})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "root is required")
	assert.Contains(t, err.Error(), "nothing was changed")
	_, serr := os.Stat(dir)
	assert.True(t, os.IsNotExist(serr))
}

func TestProfileScriptRestoresThePath(t *testing.T) {
	script := filepath.Join(t.TempDir(), "choria-lab.sh")
	require.NoError(t, os.WriteFile(script, profileScript([]string{"HOME=/root", "PATH=/nix/store/x y/bin:/usr/bin"}), 0o644))
	out, err := exec.Command("/bin/sh", "-c", ". "+script+` && printf %s "$PATH"`).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "/nix/store/x y/bin:/usr/bin", string(out))
}

// A server's paths, as the topology names them, land where the lab's
// bind mounts show them inside the host: the deepest bind wins.
func TestMachinePath(t *testing.T) {
	p := testPlan(t, 2)
	l := p.Layout
	sp := p.Topology.ServerPaths
	server := host(t, p, "server2")
	for inside, want := range map[string]string{
		sp.StatusFile: filepath.Join(l.HostLogDir("server2"), "choria-status.json"),
		sp.AgentDir(): filepath.Join(l.HostStateDir("server2"), "plugins", "mcollective", "agent"),
		sp.FactsFile:  filepath.Join(l.HostEtcChoria("server2"), "facts.json"),
		sp.MachineDir: filepath.Join(l.HostEtcChoria("server2"), "machine"),
	} {
		got, err := server.MachinePath(inside)
		require.NoError(t, err, inside)
		assert.Equal(t, want, got, inside)
	}
	_, err := server.MachinePath("/etc/passwd")
	assert.ErrorContains(t, err, "/etc/passwd on server2 is in no directory the lab binds")
	_, err = server.MachinePath("/var/logs/x")
	assert.Error(t, err, "a sibling with a common prefix is not inside")

	client := host(t, p, "client")
	got, err := client.MachinePath("/root/htdocs/requests.tgz")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(l.Docroot(), "requests.tgz"), got)
}
