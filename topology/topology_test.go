package topology

import (
	"encoding/json"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/choria-io/go-choria/providers/agent/mcorpc"
	"github.com/choria-io/tokens"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultTopology(t *testing.T) {
	topo, err := Default()
	require.NoError(t, err)

	assert.Equal(t, []string{"choria.servers", "choria.broker", "choria.clients", "nats"}, topo.NetworkNames())
	hosts := topo.AllHosts()
	assert.Len(t, hosts, 7+10)
	assert.Equal(t, "server1", hosts[7].Name)
	assert.Equal(t, netip.MustParseAddr("198.18.1.10"), hosts[16].Addresses["choria.servers"])
	assert.Equal(t, "server10.choria.local", topo.FQDN(hosts[16].Name))
	assert.Equal(t, []string{"nats://broker.choria.local:4222"}, topo.BrokerURLs())
	assert.Equal(t, []string{"broker.choria.local:4222"}, topo.BrokerAddresses())
	assert.Empty(t, topo.BrokerPeers(), "one broker has no routes")
	assert.Equal(t, 1, topo.StreamReplicas())
	assert.False(t, topo.Clustered())
	assert.Equal(t, "nats://nats.choria.local:4222", topo.NATSURL())

	// the reference's isolation: the client shares no network with any server,
	// and the NATS host shares one only with the replicator
	shares := func(a, b Host) bool {
		for n := range a.Addresses {
			if _, ok := b.Addresses[n]; ok {
				return true
			}
		}
		return false
	}
	client := topo.MustHost(RoleClient)
	nats := topo.MustHost(RoleNATS)
	for _, h := range hosts {
		if h.Role == RoleServer {
			assert.False(t, shares(client, h), "client shares a network with %s", h.Name)
		}
		if h.Name != nats.Name {
			assert.Equal(t, h.Role == RoleReplicator, shares(nats, h), "nats and %s", h.Name)
		}
	}
	assert.True(t, shares(client, topo.MustHost(RoleBroker)))
	assert.True(t, shares(client, topo.MustHost(RoleAAA)))

	big, err := topo.WithServers(500)
	require.NoError(t, err)
	assert.Len(t, big.AllHosts(), 507)
	_, err = topo.WithServers(5000)
	assert.ErrorContains(t, err, "servers.count 5000 does not fit network \"choria.servers\"")
	assert.Equal(t, 10, topo.Servers.Count, "WithServers must not change the original")
}

func TestBrokerCluster(t *testing.T) {
	topo, err := Default()
	require.NoError(t, err)
	c, err := topo.Cluster()
	require.NoError(t, err)
	assert.Equal(t, 1, topo.Brokers.Count, "Cluster must not change the original")
	assert.Equal(t, 3, c.Brokers.Count, "the cluster profile runs every broker listed")
	assert.True(t, c.Clustered())

	var names []string
	for _, b := range c.BrokerHosts() {
		names = append(names, b.Name)
		assert.Equal(t, RoleBroker, b.Role)
		assert.Equal(t, []string{"choria.broker", "choria.clients", "choria.servers"}, b.SortedNetworks(), "%s is on the broker's networks", b.Name)
	}
	assert.Equal(t, []string{"broker", "broker2", "broker3"}, names)
	hosts := c.AllHosts()
	assert.Len(t, hosts, 9+10)
	assert.Equal(t, "broker3", hosts[2].Name, "brokers come first, in order")
	assert.Equal(t, "server1", hosts[9].Name)

	assert.Equal(t, []string{"nats://broker.choria.local:4222", "nats://broker2.choria.local:4222", "nats://broker3.choria.local:4222"}, c.BrokerURLs())
	assert.Equal(t, []string{"nats://broker.choria.local:5222", "nats://broker2.choria.local:5222", "nats://broker3.choria.local:5222"}, c.BrokerPeers())
	assert.Equal(t, 3, c.StreamReplicas(), "R3 on a cluster")

	two, err := topo.WithBrokers(2)
	require.NoError(t, err)
	assert.Equal(t, 2, two.StreamReplicas())

	_, err = c.HostByRole(RoleBroker)
	assert.ErrorContains(t, err, `role "broker" has 3 hosts (broker, broker2, broker3), not one`)
	b, err := topo.HostByRole(RoleBroker)
	require.NoError(t, err)
	assert.Equal(t, "broker", b.Name)

	_, err = topo.WithBrokers(4)
	assert.ErrorContains(t, err, "brokers.count 4: brokers.hosts lists only 3 brokers")
	_, err = topo.WithBrokers(0)
	assert.ErrorContains(t, err, "brokers.count must be at least 1")
}

func TestUserPermissionsMatchTheReference(t *testing.T) {
	topo, err := Default()
	require.NoError(t, err)
	perms := map[string]tokens.ClientPermissions{}
	for _, u := range topo.Users {
		p, err := u.ClientPermissions()
		require.NoError(t, err)
		perms[u.Name] = *p
	}
	assert.Equal(t, map[string]tokens.ClientPermissions{
		"admin":   {OrgAdmin: true, SystemUser: true, SignedFleetManagement: true},
		"streams": {StreamsAdmin: true},
		"choria":  {SignedFleetManagement: true, EventsViewer: true},
	}, perms)
}

// The servers evaluate the users' policies with go-choria's own OPA code, so
// the policies are tested with it.
func TestOPAPoliciesAsServersEvaluateThem(t *testing.T) {
	topo, err := Default()
	require.NoError(t, err)
	policy := map[string]string{}
	for _, u := range topo.Users {
		policy[u.Name] = u.OPAPolicy
	}
	assert.Empty(t, policy["streams"], "the streams user manages no fleet")

	log := logrus.NewEntry(logrus.New())
	allowed := func(user, agent, action string) bool {
		t.Helper()
		claims, err := tokens.NewClientIDClaims("up="+user, nil, "choria", nil, policy[user], "", 3600e9, &tokens.ClientPermissions{SignedFleetManagement: true}, nil)
		require.NoError(t, err)
		req := &mcorpc.Request{Agent: agent, Action: action, Data: json.RawMessage(`{"token":"x"}`), CallerID: "up=" + user, Collective: "choria"}
		ok, err := mcorpc.EvaluateOpenPolicyAgentPolicy(req, policy[user], claims, "server", log)
		require.NoError(t, err, "policy of %s", user)
		return ok
	}
	assert.True(t, allowed("admin", "choria_provision", "restart"))
	assert.True(t, allowed("admin", "rpcutil", "ping"))
	assert.False(t, allowed("choria", "choria_provision", "restart"))
	assert.False(t, allowed("choria", "choria_provision", "reprovision"))
	assert.True(t, allowed("choria", "rpcutil", "ping"))
	assert.True(t, allowed("choria", "requests", "request"))
	assert.True(t, allowed("choria", "choria_util", "info"))
}

func TestValidationErrors(t *testing.T) {
	base := string(DefaultJSON())
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown field", `"domain"`, `"domian": "x", "domain"`, `unknown field "domian"`},
		{"unknown host role", `"role": "plugins"`, `"role": "webserver"`, `unknown role "webserver"`},
		{"missing role", `"role": "plugins"`, `"role": "client"`, `role "plugins" must have exactly one host, has 0`},
		{"overlapping networks", `"198.18.6.0/24"`, `"198.18.5.0/25"`, `overlap`},
		{"outside lab range", `"198.18.6.0/24"`, `"10.0.0.0/24"`, `outside the lab range`},
		{"address outside its network", `"nats": "198.18.6.50"`, `"nats": "198.18.5.50"`, `is not a host address of network "nats"`},
		{"duplicate address", `"198.18.4.20"`, `"198.18.4.10"`, `share address 198.18.4.10`},
		{"unknown network", `{ "choria.clients": "198.18.5.70" }`, `{ "clients": "198.18.5.70" }`, `unknown network "clients"`},
		{"bad permission", `"streams_admin": true`, `"stream_admin": true`, `user "streams" broker_permissions`},
		{"short provisioner interval", `"provisioner_interval": "1m",
      "replicator_heartbeat": "5s"`, `"provisioner_interval": "30s",
      "replicator_heartbeat": "5s"`, `provisioner_interval must be at least 1m`},
		{"short plugins check interval", `"plugins_check_interval": "10s"`, `"plugins_check_interval": "5s"`, `timings.lab.plugins_check_interval must be at least 10s`},
		{"missing interval", `"registration_interval": "10s",`, ``, `timings.lab.registration_interval must be longer than 0`},
		{"bad duration", `"user_login": "1h"`, `"user_login": "an hour"`, `invalid duration`},
		{"relative path", `"/etc/aaasvc"`, `"etc/aaasvc"`, `must be absolute`},
		{"relative server path", `"facts_file": "/etc/choria/facts.json"`, `"facts_file": "facts.json"`, `server_paths.facts_file "facts.json" must be a clean absolute path`},
		{"unclean server path", `"plugins_dir": "/var/lib/choria/plugins"`, `"plugins_dir": "/var/lib/choria/../plugins"`, `server_paths.plugins_dir`},
		{"missing server path", `"status_file": "/var/log/choria-status.json",`, ``, `server_paths.status_file "" must be`},
		{"bad host name", `"name": "client"`, `"name": "Client_1"`, `not a valid DNS label`},
		{"server tokens outliving their issuer", `"server_token": "8760h"`, `"server_token": "43800h"`, `cannot exceed validity.signers`},
		{"no servers", `"count": 10`, `"count": 0`, `servers.count must be at least 1`},
		// each of these reached a panic or a broken configuration before
		{"no registration subjects", `"subjects": ["choria.node_metadata.>"]`, `"subjects": []`, `streams.registration.subjects is empty`},
		{"registration subject without wildcard", `"subjects": ["choria.node_metadata.>"]`, `"subjects": ["choria.node_metadata"]`, `must end in .>`},
		{"bad subject", `"choria.submission.in.hello.>"`, `"choria..hello"`, `is not a NATS subject`},
		{"bad stream name", `"name": "SUBMIT"`, `"name": "SUB MIT"`, `is not a stream name`},
		{"port 0", `"aaa_monitor": 8081`, `"aaa_monitor": 0`, `ports.aaa_monitor is 0, not a port`},
		{"port too high", `"plugins_http": 80`, `"plugins_http": 65536`, `ports.plugins_http is 65536`},
		{"two ports of one host", `"aaa_monitor": 8081`, `"aaa_monitor": 8080`, `ports.aaa_login and ports.aaa_monitor are both 8080 on one host`},
		// FuzzParse: a huge count generated every server before failing
		{"broker among the hosts", `{ "name": "provisioner", "role": "provisioner"`, `{ "name": "provisioner", "role": "broker"`, `host "provisioner": brokers are listed in brokers.hosts, not in hosts`},
		{"broker of another role", `"name": "broker2",`, `"name": "broker2", "role": "client",`, `broker "broker2" has role "client"`},
		// a broker that does not run yet must not clash either
		{"idle broker on a taken address", `"choria.broker": "198.18.4.12"`, `"choria.broker": "198.18.4.20"`, `share address 198.18.4.20`},
		{"idle broker with a taken name", `"name": "broker3"`, `"name": "aaa"`, `host "aaa" is declared twice`},
		{"brokers on no common network", `"count": 1,
    "hosts": [
      {
        "name": "broker",
        "addresses": { "choria.broker": "198.18.4.10", "choria.servers": "198.18.0.10", "choria.clients": "198.18.5.10" }
      },
      {
        "name": "broker2",
        "addresses": { "choria.broker": "198.18.4.11", "choria.servers": "198.18.0.11", "choria.clients": "198.18.5.11" }`, `"count": 2,
    "hosts": [
      {
        "name": "broker",
        "addresses": { "choria.broker": "198.18.4.10", "choria.servers": "198.18.0.10", "choria.clients": "198.18.5.10" }
      },
      {
        "name": "broker2",
        "addresses": { "nats": "198.18.6.11" }`, `brokers broker, broker2 share no network: a cluster's routes need one`},
		{"unknown Go runtime setting", `"user": "nats" }`, `"user": "nats", "go_runtime": { "GOGC": "200", "GODEBUG": "x=1" } }`, `role "nats": go_runtime.GODEBUG is not a Go runtime setting (known: GOGC, GOMAXPROCS, GOMEMLIMIT)`},
		{"bad GOMEMLIMIT", `"user": "nats" }`, `"user": "nats", "go_runtime": { "GOMEMLIMIT": "64MB" } }`, `role "nats": go_runtime.GOMEMLIMIT "64MB" is not a value Go accepts`},
		{"bad GOGC", `"user": "nats" }`, `"user": "nats", "go_runtime": { "GOGC": "-1" } }`, `go_runtime.GOGC "-1"`},
		{"no GOMAXPROCS", `"user": "nats" }`, `"user": "nats", "go_runtime": { "GOMAXPROCS": "0" } }`, `go_runtime.GOMAXPROCS "0"`},
		{"more brokers than listed", `"count": 1,`, `"count": 4,`, `brokers.count 4: brokers.hosts lists only 3 brokers`},
		{"more servers than addresses", `"count": 10`, `"count": 9999999999`, `servers.count 9999999999 does not fit network "choria.servers" (198.18.0.0/22) from 198.18.1.1: at most 766 servers`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, base, tc.old, "test setup: text to replace")
			_, err := Parse([]byte(strings.Replace(base, tc.old, tc.new, 1)), "test.json")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "test.json")
		})
	}
}

// TestGoRuntimeEnv: a role's Go runtime settings become its environment,
// in a stable order, and values Go accepts pass validation.
func TestGoRuntimeEnv(t *testing.T) {
	base := string(DefaultJSON())
	old := `"user": "nats" }`
	require.Contains(t, base, old, "test setup: text to replace")
	topo, err := Parse([]byte(strings.Replace(base, old, `"user": "nats", "go_runtime": { "GOMEMLIMIT": "96MiB", "GOGC": "off", "GOMAXPROCS": "1" } }`, 1)), "test.json")
	require.NoError(t, err)
	assert.Equal(t, []string{"GOGC=off", "GOMAXPROCS=1", "GOMEMLIMIT=96MiB"}, topo.Roles[RoleNATS].GoRuntimeEnv())
	assert.Empty(t, topo.Roles[RoleAAA].GoRuntimeEnv(), "a role without go_runtime keeps Go's defaults")
}

func TestLoad(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorContains(t, err, "missing.json")

	f := filepath.Join(t.TempDir(), "t.json")
	require.NoError(t, os.WriteFile(f, []byte(`{"domain": `), 0o600))
	_, err = Load(f)
	assert.ErrorContains(t, err, "t.json")

	require.NoError(t, os.WriteFile(f, []byte(strings.Replace(string(DefaultJSON()), `"count": 10`, `"count": 3`, 1)), 0o600))
	topo, err := Load(f)
	require.NoError(t, err)
	assert.Equal(t, "choria.local", topo.Domain)

	topo, err = LoadOrDefault(f)
	require.NoError(t, err)
	assert.Equal(t, 3, topo.Servers.Count, "the file, not the built-in topology")
	topo, err = LoadOrDefault("")
	require.NoError(t, err)
	assert.Equal(t, 10, topo.Servers.Count, "the built-in topology")
	_, err = LoadOrDefault(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorContains(t, err, "missing.json")
}

// Intervals names each interval by its JSON key, and lists them all: the
// keys validation errors name, and the ones per_server grows.
func TestIntervalsAreTheJSONKeys(t *testing.T) {
	var tm Timings
	b, err := json.Marshal(tm)
	require.NoError(t, err)
	var keys map[string]any
	require.NoError(t, json.Unmarshal(b, &keys))
	var names []string
	for i, iv := range tm.Intervals() {
		names = append(names, iv.Name)
		iv.Duration.Duration = time.Duration(i+1) * time.Second
	}
	assert.ElementsMatch(t, names, slices.Collect(maps.Keys(keys)))
	b, err = json.Marshal(tm)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &keys))
	for i, name := range names {
		assert.Equal(t, strconv.Itoa(i+1)+"s", keys[name], "%s points at its own field", name)
	}
}

// The lab's intervals grow with the fleet; the reference's do not.
func TestTimingsGrowWithTheFleet(t *testing.T) {
	at := func(n int, profile string) Timings {
		t.Helper()
		topo, err := Default()
		require.NoError(t, err)
		topo, err = topo.WithServers(n)
		require.NoError(t, err)
		tm, err := topo.Timing(profile)
		require.NoError(t, err)
		assert.Nil(t, tm.PerServer, "the fleet's timings are final")
		return tm
	}
	small := at(10, TimingsLab)
	assert.Equal(t, 10*time.Second, small.RegistrationInterval.Duration, "a small fleet keeps the base intervals")
	assert.Equal(t, 10*time.Second, small.PluginsCheckInterval.Duration)
	assert.Equal(t, 5*time.Second, small.StatusInterval.Duration)
	assert.Equal(t, time.Minute, small.ProvisionerInterval.Duration)

	big := at(500, TimingsLab)
	assert.Equal(t, 150*time.Second, big.RegistrationInterval.Duration)
	assert.Equal(t, 75*time.Second, big.StatusInterval.Duration)
	assert.Equal(t, 25*time.Minute, big.FactsInterval.Duration)
	assert.Equal(t, 15*time.Minute, big.PluginsInterval.Duration)
	assert.Equal(t, 150*time.Second, big.PluginsPollInterval.Duration)
	assert.Equal(t, 150*time.Second, big.PluginsCheckInterval.Duration)
	assert.Equal(t, 250*time.Second, big.ProvisionerInterval.Duration, "twice the interval outlasts the provisioning queue")
	assert.Equal(t, 5*time.Minute, big.PluginsManageInterval.Duration, "no per-server part: the base")

	odd := at(67, TimingsLab)
	assert.Equal(t, 21*time.Second, odd.RegistrationInterval.Duration, "20.1s rounds up to a whole second")

	assert.Equal(t, at(10, TimingsReference), at(500, TimingsReference))

	var doc map[string]any
	require.NoError(t, json.Unmarshal(DefaultJSON(), &doc))
	lab := doc["timings"].(map[string]any)["lab"].(map[string]any)
	lab["per_server"].(map[string]any)["per_server"] = map[string]any{"status_interval": "1s"}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	_, err = Parse(b, "nested.json")
	assert.ErrorContains(t, err, "timings.lab.per_server cannot hold a per_server of its own")
}
