package nixcheck

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/agents/requests"
	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/reproducible-choria/deployment/topology"
)

// labPlan is the namespace lab's plan of the default topology with this
// many servers, its programs in /lab.
func labPlan(t *testing.T, servers int) *lab.Plan {
	t.Helper()
	topo, err := topology.Default()
	require.NoError(t, err)
	topo, err = topo.WithServers(servers)
	require.NoError(t, err)
	return planOf(t, topo)
}

// planOf is the namespace lab's plan of topo, with its programs in /lab.
func planOf(t *testing.T, topo *topology.Topology) *lab.Plan {
	t.Helper()
	progs := &lab.Programs{
		Choria: "/lab/choria", Provisioner: "/lab/choria-provisioner", AAASvc: "/lab/aaasvc", StreamReplicator: "/lab/stream-replicator",
		NATSServer: "/lab/nats-server", NATS: "/lab/nats", ProvisionHelper: "/lab/choria-provision-helper", Requests: "/lab/requests",
		Facts: "/lab/choria-facts", PluginPack: "/lab/choria-plugin-pack", PluginsServer: "/lab/choria-plugins-server",
		Lab: "/lab/choria-lab", Nsenter: "/lab/nsenter", Setpriv: "/lab/setpriv",
	}
	plan, err := lab.NewPlan(lab.PlanOptions{Topology: topo, Layout: lab.Layout{Dir: "/var/lab"}, Programs: progs})
	require.NoError(t, err)
	return plan
}

// TestLabRunsWhatTheUnitsRun evaluates the lab profile (nixosModules.lab)
// as each host and holds every service's unit against the process the
// namespace lab starts for that host: the same program with the same
// arguments, as the same user. The lab is our only window on the VMs, so
// it must run each role as its unit does.
func TestLabRunsWhatTheUnitsRun(t *testing.T) {
	res := evalModules(t)
	var modules map[string]struct {
		Systemd struct {
			Services map[string]struct {
				ServiceConfig struct {
					ExecStart   string `json:"ExecStart"`
					User        string `json:"User"`
					DynamicUser bool   `json:"DynamicUser"`
					// numbers are seconds to systemd; ours are strings
					RestartSec         any `json:"RestartSec"`
					RestartMaxDelaySec any `json:"RestartMaxDelaySec"`
				} `json:"serviceConfig"`
				UnitConfig struct {
					StartLimitIntervalSec *int `json:"StartLimitIntervalSec"`
				} `json:"unitConfig"`
				Environment map[string]*string `json:"environment"`
			} `json:"services"`
		} `json:"systemd"`
		Services struct {
			NATS struct {
				Enable     bool           `json:"enable"`
				ServerName string         `json:"serverName"`
				Port       int            `json:"port"`
				JetStream  bool           `json:"jetstream"`
				Settings   map[string]any `json:"settings"`
			} `json:"nats"`
		} `json:"services"`
	}
	require.NoError(t, json.Unmarshal(res["modules"], &modules))

	plan := labPlan(t, 3)

	units := map[string]string{
		"broker": "choria-broker", "provisioner": "choria-provisioner", "aaa": "aaasvc",
		"replicator": "stream-replicator", "plugins": "choria-plugins-webserver", "server3": "choria-server",
	}
	checked := 0
	for _, hp := range plan.Hosts {
		m, ok := modules["lab-"+hp.Host.Name]
		if !ok {
			continue
		}
		if hp.Host.Role == topology.RoleNATS {
			// nixpkgs' services.nats: settings plus what its module adds,
			// rendered as JSON and run with nats-server -c
			n := m.Services.NATS
			require.True(t, n.Enable)
			want := map[string]any{}
			for k, v := range n.Settings {
				want[k] = v
			}
			want["server_name"], want["port"] = n.ServerName, float64(n.Port)
			if n.JetStream {
				want["jetstream"] = map[string]any{"store_dir": "/var/lib/nats"} // the module's dataDir
			}
			got := roundTrip(t, lab.NATSSettings(plan.Topology, hp.Host))
			assert.Equal(t, want, got, "nats.conf of the lab and of services.nats")
			require.Len(t, hp.Processes, 1)
			assert.Equal(t, []string{"-c", "/etc/nats/" + lab.NATSConfigFile}, hp.Processes[0].Argv[1:], "nixpkgs runs nats-server -c FILE")
			assert.Equal(t, "nats", hp.Processes[0].Account.Name, "services.nats' user")
			assert.Equal(t, goRuntime(hp.Processes[0].Env), goRuntimeOfUnit(m.Systemd.Services["nats"].Environment), "nats: Go runtime")
			checked++
			continue
		}
		unit, ok := units[hp.Host.Name]
		if !ok {
			continue
		}
		svc, ok := m.Systemd.Services[unit]
		require.True(t, ok, "lab-%s has no %s service", hp.Host.Name, unit)
		require.Len(t, hp.Processes, 1, hp.Host.Name)
		proc := hp.Processes[0]

		unitArgv, err := shellquote.Split(svc.ServiceConfig.ExecStart)
		require.NoError(t, err)
		labArgv := proc.Argv
		if hp.Host.Role == topology.RolePlugins {
			// the one path that differs: the lab serves its docroot at the
			// topology's state directory, the lab profile at its docroot
			// option (a directory the VM test shares with the client)
			labArgv = replace(labArgv, plan.Topology.Roles[topology.RolePlugins].StateDir, "/srv/choria-plugins")
		}
		assert.Equal(t, filepath.Base(unitArgv[0]), filepath.Base(labArgv[0]), "%s: program", hp.Host.Name)
		assert.Equal(t, unitArgv[1:], labArgv[1:], "%s: arguments", hp.Host.Name)

		user := svc.ServiceConfig.User
		if user == "" {
			user = "root"
		}
		labUser := "root"
		if proc.Account != nil {
			labUser = proc.Account.Name
		}
		assert.Equal(t, user, labUser, "%s: user", hp.Host.Name)

		assert.Equal(t, goRuntime(proc.Env), goRuntimeOfUnit(svc.Environment), "%s: Go runtime", unit)

		// restarted after a crash as the lab's supervisor restarts it
		first, err := time.ParseDuration(fmt.Sprint(svc.ServiceConfig.RestartSec))
		require.NoError(t, err, "%s: RestartSec", unit)
		last, err := time.ParseDuration(fmt.Sprint(svc.ServiceConfig.RestartMaxDelaySec))
		require.NoError(t, err, "%s: RestartMaxDelaySec", unit)
		assert.Equal(t, supervisor.MinBackoff, first, "%s: first restart delay", unit)
		assert.Equal(t, supervisor.MaxBackoff, last, "%s: longest restart delay", unit)
		if assert.NotNil(t, svc.UnitConfig.StartLimitIntervalSec, "%s: StartLimitIntervalSec", unit) {
			assert.Zero(t, *svc.UnitConfig.StartLimitIntervalSec, "%s: never left down by a start limit, as in the lab", unit)
		}
		checked++
	}
	assert.Equal(t, 7, checked, "broker, nats, plugins, provisioner, aaa, replicator and a server")
}

// goRuntime is the Go runtime part of an environment, NAME=value.
func goRuntime(env []string) map[string]string {
	out := map[string]string{}
	for _, e := range env {
		if k, v, ok := strings.Cut(e, "="); ok && strings.HasPrefix(k, "GO") {
			out[k] = v
		}
	}
	return out
}

// goRuntimeOfUnit is the Go runtime part of a unit's environment.
func goRuntimeOfUnit(env map[string]*string) map[string]string {
	var list []string
	for k, v := range env {
		if v != nil {
			list = append(list, k+"="+*v)
		}
	}
	return goRuntime(list)
}

func roundTrip(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

func replace(argv []string, from, to string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == from {
			a = to
		}
		out[i] = a
	}
	return out
}

// TestModulesExportedAlike: every nixosModules entry is a module with the
// flake's key (and so its package default), none a bare path.
func TestModulesExportedAlike(t *testing.T) {
	res := evalModules(t)
	var keys map[string]*string
	require.NoError(t, json.Unmarshal(res["nixosModuleKeys"], &keys))
	require.NotEmpty(t, keys)
	for name, key := range keys {
		if assert.NotNil(t, key, "nixosModules.%s has no key: exported as a bare path?", name) {
			assert.Equal(t, "choria-reference#nixosModules."+name, *key)
		}
	}
}

// TestRestartsOutliveTheStartLimit: a service that restarts waits between
// tries, or systemd's default 100 ms meets the start limit at once.
func TestRestartsOutliveTheStartLimit(t *testing.T) {
	res := evalModules(t)
	var modules map[string]struct {
		Systemd struct {
			Services map[string]struct {
				ServiceConfig map[string]any `json:"serviceConfig"`
			} `json:"services"`
		} `json:"systemd"`
	}
	require.NoError(t, json.Unmarshal(res["modules"], &modules))
	seen := 0
	for scenario, m := range modules {
		for name, svc := range m.Systemd.Services {
			if _, ok := svc.ServiceConfig["Restart"]; !ok {
				continue
			}
			seen++
			assert.Contains(t, svc.ServiceConfig, "RestartSec", "%s: %s restarts with no RestartSec", scenario, name)
		}
	}
	assert.Positive(t, seen)
}

// TestServersGetTheRequestsPolicy: the lab profile gives a server the
// requests agent's policy the namespace lab writes: the plugins host and
// nothing else, read the way the agent reads its configuration.
func TestServersGetTheRequestsPolicy(t *testing.T) {
	res := evalModules(t)
	var modules map[string]struct {
		Environment struct {
			Etc map[string]struct {
				Source string `json:"source"`
			} `json:"etc"`
		} `json:"environment"`
	}
	require.NoError(t, json.Unmarshal(res["modules"], &modules))
	entry, ok := modules["lab-server3"].Environment.Etc["choria/plugin.d/requests"]
	require.True(t, ok, "the server has no /etc/choria/plugin.d/requests")
	content, err := exec.Command("bash", "-c", "cat "+entry.Source).Output()
	require.NoError(t, err)
	assertLabRequestsPolicy(t, content)
	_, lab := modules["lab-client"].Environment.Etc["choria/plugin.d/requests"]
	assert.False(t, lab, "only servers run the agent")
}

// assertLabRequestsPolicy: a requests agent's configuration file, read as
// go-external reads it, allows what the namespace lab's does: the plugins
// host and nothing else.
func assertLabRequestsPolicy(t *testing.T, content []byte) {
	t.Helper()
	settings := map[string]string{}
	item := regexp.MustCompile(`(.+?)\s*=\s*(.+)`)
	for _, line := range strings.Split(string(content), "\n") {
		line = strings.TrimSpace(line)
		if m := item.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, "#") {
			settings[m[1]] = m[2]
		}
	}
	policy, err := requests.PolicyFromSettings(settings)
	require.NoError(t, err)
	topo, err := topology.Default()
	require.NoError(t, err)
	assert.Equal(t, []string{topo.FQDN(topo.MustHost(topology.RolePlugins).Name)}, policy.AllowedHosts)
	assert.Empty(t, policy.BodyFileDirectories)
	assert.Empty(t, policy.DownloadDirectories)
}

// TestClusterNATSMakesTheReplicatorsStream: on a cluster, the lab profile's
// NATS host makes the Stream Replicator's target stream with the command
// the namespace lab runs (lab.NATSTargetStreamArgs), as the NATS service's
// user; on a single broker neither does, the replicator makes it.
func TestClusterNATSMakesTheReplicatorsStream(t *testing.T) {
	res := evalModules(t)
	var modules map[string]struct {
		Systemd struct {
			Services map[string]struct {
				Script        string `json:"script"`
				ServiceConfig struct {
					User string `json:"User"`
				} `json:"serviceConfig"`
			} `json:"services"`
		} `json:"systemd"`
	}
	require.NoError(t, json.Unmarshal(res["modules"], &modules))

	_, single := modules["lab-nats"].Systemd.Services["choria-lab-nats-stream"]
	assert.False(t, single, "one broker: the replicator makes its target stream")
	assert.Nil(t, lab.NATSTargetStreamArgs(labPlan(t, 3).Topology))

	svc, ok := modules["lab-nats-cluster"].Systemd.Services["choria-lab-nats-stream"]
	require.True(t, ok, "the cluster's NATS host has no choria-lab-nats-stream service")
	assert.Equal(t, "nats", svc.ServiceConfig.User)
	_, add, ok := strings.Cut(strings.TrimSpace(svc.Script), "|| ")
	require.True(t, ok, "the script makes the stream only where it is missing: %s", svc.Script)
	argv, err := shellquote.Split(add)
	require.NoError(t, err)
	topo, err := topology.Default()
	require.NoError(t, err)
	cluster, err := topo.Cluster()
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(argv[0], "/bin/nats"), argv[0])
	assert.Equal(t, lab.NATSTargetStreamArgs(cluster), argv[1:], "the lab profile and the namespace lab make the same stream")
}

// TestLabUnitsGetTheGoRuntime: a topology that tunes a role's Go runtime
// (the built-in one leaves Go's defaults) gives the role's unit the same
// environment the namespace lab gives its process.
func TestLabUnitsGetTheGoRuntime(t *testing.T) {
	tuned := map[string]map[string]string{
		topology.RoleServer: {"GOGC": "200", "GOMEMLIMIT": "64MiB"},
		topology.RoleBroker: {"GOMAXPROCS": "1"},
	}
	topo, err := topology.Default()
	require.NoError(t, err)
	topo, err = topo.WithServers(3)
	require.NoError(t, err)
	var nixRoles []string
	for role, env := range tuned {
		r := topo.Roles[role]
		r.GoRuntime = env
		topo.Roles[role] = r
		b, err := json.Marshal(env)
		require.NoError(t, err)
		nixRoles = append(nixRoles, fmt.Sprintf("roles.%s.go_runtime = builtins.fromJSON %s;", role, strconv.Quote(string(b))))
	}
	plan := planOf(t, topo)

	for host, unit := range map[string]string{"server3": "choria-server", "broker": "choria-broker"} {
		out, err := evalScenario(t, `m: [ m.lab ({ options, lib, ... }: {
			services.choria-lab = {
				enable = true;
				host = "`+host+`";
				topology = lib.recursiveUpdate options.services.choria-lab.topology.default { `+strings.Join(nixRoles, " ")+` };
			};
		}) ]`)
		require.NoError(t, err)
		var cfg configUnits
		require.NoError(t, json.Unmarshal(out, &cfg))
		svc, ok := cfg.Systemd.Services[unit]
		require.True(t, ok, "%s has no %s", host, unit)
		var hp lab.HostPlan
		for _, h := range plan.Hosts {
			if h.Host.Name == host {
				hp = h
			}
		}
		require.NotEmpty(t, hp.Processes, host)
		proc := hp.Processes[0]
		assert.Equal(t, tuned[hp.Host.Role], goRuntime(proc.Env), "%s: the lab's process", host)
		assert.Equal(t, goRuntime(proc.Env), goRuntimeOfUnit(svc.Environment), "%s: the unit %s", host, unit)
	}
}
