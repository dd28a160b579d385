package lab

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/agents/requests"
	"github.com/reproducible-choria/deployment/internal/bootstrap"
	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/reproducible-choria/deployment/machines"
	"github.com/reproducible-choria/deployment/topology"
)

// Staging needs only this repository's programs: what every host holds
// before it starts, where its binds show it, owned as its unit's user
// would own it.
func TestStageHosts(t *testing.T) {
	testenv.RequireRoot(t) // hands directories to the service users
	ours := t.TempDir()
	testenv.Build(t, ours, "./cmd/choria-plugin-pack", "./cmd/requests")
	progs := testPrograms()
	progs.PluginPack = filepath.Join(ours, "choria-plugin-pack")
	progs.Requests = filepath.Join(ours, "requests")

	topo, err := topology.Default()
	require.NoError(t, err)
	topo, err = topo.WithServers(2)
	require.NoError(t, err)
	layout := Layout{Dir: t.TempDir()}
	p, err := NewPlan(PlanOptions{Topology: topo, Layout: layout, Programs: progs})
	require.NoError(t, err)
	_, err = bootstrap.Run(bootstrap.Options{Topology: topo, Out: layout.Credentials().Dir, Timings: topology.TimingsLab, Render: true, HelperCommand: progs.ProvisionHelper})
	require.NoError(t, err)
	// a previous lab's leftovers are cleared
	stale := filepath.Join(layout.HostEtcChoria("server1"), "server.jwt")
	require.NoError(t, os.MkdirAll(filepath.Dir(stale), 0o755))
	require.NoError(t, os.WriteFile(stale, []byte("old"), 0o600))

	require.NoError(t, stageHosts(p, progs, topology.TimingsLab))

	sp := topo.ServerPaths
	server := host(t, p, "server1")
	on := func(hp HostPlan, inside string) string {
		t.Helper()
		p, err := hp.MachinePath(inside)
		require.NoError(t, err)
		return p
	}
	assert.NoFileExists(t, stale, "servers start unprovisioned")

	jwt := on(server, filepath.Join(topo.Roles[topology.RoleServer].ConfigDir, "provisioning.jwt"))
	st, err := os.Stat(jwt)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	want, err := os.ReadFile(layout.Credentials().ProvisioningJWT())
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, jwt))

	facts := string(readFile(t, on(server, filepath.Join(sp.MachineDir, machines.Facts, "machine.yaml"))))
	assert.Contains(t, facts, sp.FactsFile, "the gatherer writes where the server reads")
	gather, err := os.Readlink(on(server, filepath.Join(sp.MachineDir, machines.Facts, "gather")))
	require.NoError(t, err)
	assert.Equal(t, progs.Facts, gather)
	ea := string(readFile(t, on(server, filepath.Join(sp.MachineDir, machines.ExternalAgents, "machine.yaml"))))
	assert.Contains(t, ea, sp.AgentDir())
	assert.FileExists(t, on(server, filepath.Join(sp.MachineDir, machines.ExternalAgents, "machine_data.json")))
	assert.DirExists(t, on(server, sp.AgentDir()))
	policy := string(readFile(t, on(server, filepath.Join(topo.Roles[topology.RoleServer].ConfigDir, "plugin.d", requests.Name))))
	assert.Contains(t, policy, "plugins.choria.local")
	packed, err := filepath.Glob(filepath.Join(layout.Docroot(), "requests-agent_*.tar.gz"))
	require.NoError(t, err)
	assert.Len(t, packed, 1, "the requests agent is packed into the docroot")

	client := host(t, p, "client")
	assert.FileExists(t, filepath.Join(layout.HostHome("client"), "plugins", machines.CheckChoria, "machine.yaml"))
	profile := string(readFile(t, filepath.Join(netlab.UpperDir(layout.NSRoot(client.Host.Name), "/etc"), "profile.d", "choria-lab.sh")))
	assert.Contains(t, profile, "export PATH=")

	nats := host(t, p, "nats")
	assert.FileExists(t, on(nats, filepath.Join(topo.Roles[topology.RoleNATS].ConfigDir, NATSConfigFile)))

	// the broker's service user exists in its host's /etc and owns its
	// state, closed to others
	broker := host(t, p, "broker")
	require.NotNil(t, broker.Account)
	passwd := string(readFile(t, filepath.Join(netlab.UpperDir(layout.NSRoot("broker"), "/etc"), "passwd")))
	assert.Contains(t, passwd, broker.Account.Name+":x:")
	machinePasswd := string(readFile(t, "/etc/passwd"))
	assert.True(t, strings.HasPrefix(passwd, machinePasswd), "the machine's accounts stay")
	for _, dir := range broker.Owned {
		st, err := os.Stat(dir)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o750), st.Mode().Perm(), dir)
		assert.EqualValues(t, broker.Account.UID, st.Sys().(*syscall.Stat_t).Uid, dir)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
