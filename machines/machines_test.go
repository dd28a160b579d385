package machines

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/choria-io/go-choria/aagent/machine"
	"github.com/google/shlex"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/reproducible-choria/deployment/machines/machinetest"
)

// place writes a machine definition where a server would find it.
func place(t *testing.T, name string, def []byte) string {
	t.Helper()

	dir := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "machine.yaml"), def, 0o644))

	return dir
}

// schemaKnows lists the machines the v0.30.2 machine JSON schema can
// check: it predates the nagios "builtin" property (it insists on "plugin")
// and the plugins watcher, so `choria machine validate` rejects the
// reference's check_choria and external agents machines as well. For those
// the loader and the watchers' own constructors are the authority.
var schemaKnows = map[string]bool{Facts: true}

// validate runs go-choria's checks: the JSON schema `choria machine
// validate` uses where it applies, and the loader and watcher constructors
// the server uses.
func validate(t *testing.T, name string, def []byte) *machine.Machine {
	t.Helper()

	dir := place(t, name, def)
	verrs, err := machine.ValidateDir(dir)
	require.NoError(t, err)
	if schemaKnows[name] {
		require.Empty(t, verrs, "schema validation of %s", name)
	} else {
		require.NotEmpty(t, verrs, "the schema learnt about %s, enforce it", name)
	}

	m, _ := machinetest.Load(t, dir)
	return m
}

func TestShippedMachinesAreValid(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			def, err := Definition(name)
			require.NoError(t, err)

			onDisk, err := os.ReadFile(filepath.Join(name, "machine.yaml"))
			require.NoError(t, err)
			require.Equal(t, onDisk, def)

			m := validate(t, name, def)
			require.Equal(t, map[string]string{
				Facts: "facts", CheckChoria: "check_choria", ExternalAgents: "external_agent_manager",
			}[name], m.Name())
		})
	}

	_, err := Definition("nope")
	require.ErrorContains(t, err, `unknown machine "nope"`)
}

type transition struct {
	From        []string
	Destination string
}

func transitions(m *machine.Machine) map[string]transition {
	res := map[string]transition{}
	for _, t := range m.Transitions {
		res[t.Name] = transition{From: t.From, Destination: t.Destination}
	}
	return res
}

func watcher(t *testing.T, m *machine.Machine, name string) map[string]any {
	t.Helper()
	for _, w := range m.WatcherDefs {
		if w.Name == name {
			return map[string]any{
				"type": w.Type, "states": w.StateMatch, "interval": w.Interval,
				"fail": w.FailTransition, "properties": w.Properties,
			}
		}
	}
	t.Fatalf("no watcher %s", name)
	return nil
}

func TestFactsMachineMatchesReference(t *testing.T) {
	def, err := Definition(Facts)
	require.NoError(t, err)
	m := validate(t, Facts, def)

	require.Equal(t, "facts", m.Name())
	require.Equal(t, "GATHER", m.InitialState)
	require.Equal(t, map[string]transition{
		"enter_maintenance": {From: []string{"GATHER"}, Destination: "MAINTENANCE"},
		"resume":            {From: []string{"MAINTENANCE"}, Destination: "GATHER"},
	}, transitions(m))
	require.Len(t, m.WatcherDefs, 2)

	require.Equal(t, map[string]any{
		"type": "timer", "states": []string{"MAINTENANCE"}, "interval": "", "fail": "resume",
		"properties": map[string]any{"timer": "24h"},
	}, watcher(t, m, "maintenance_timeout"))

	require.Equal(t, map[string]any{
		"type": "exec", "states": []string{"GATHER"}, "interval": "10m", "fail": "",
		"properties": map[string]any{
			"command": "./gather", "timeout": "1m",
			"gather_initial_state": true, "suppress_success_announce": false,
		},
	}, watcher(t, m, "gather_facts"))
}

func TestCheckChoriaMachineMatchesReference(t *testing.T) {
	def, err := Definition(CheckChoria)
	require.NoError(t, err)
	m := validate(t, CheckChoria, def)

	all := []string{"UNKNOWN", "OK", "WARNING", "CRITICAL", "FORCE_CHECK"}
	require.Equal(t, "check_choria", m.Name())
	require.Equal(t, "UNKNOWN", m.InitialState)
	require.Equal(t, map[string]transition{
		"UNKNOWN":     {From: all, Destination: "UNKNOWN"},
		"OK":          {From: all, Destination: "OK"},
		"WARNING":     {From: all, Destination: "WARNING"},
		"CRITICAL":    {From: all, Destination: "CRITICAL"},
		"FORCE_CHECK": {From: all[:4], Destination: "FORCE_CHECK"},
		"MAINTENANCE": {From: all, Destination: "MAINTENANCE"},
		"RESUME":      {From: []string{"MAINTENANCE"}, Destination: "UNKNOWN"},
	}, transitions(m))

	require.Len(t, m.WatcherDefs, 1)
	w := watcher(t, m, "check")
	require.Equal(t, "nagios", w["type"])
	require.Equal(t, all[:4], w["states"])
	require.Equal(t, "5m", w["interval"])
	props := w["properties"].(map[string]any)
	require.Equal(t, "choria_status", props["builtin"])
	require.Equal(t, "720h", props["last_message"])
}

func TestExternalAgentsMachine(t *testing.T) {
	def, err := Definition(ExternalAgents)
	require.NoError(t, err)
	m := validate(t, ExternalAgents, def)

	require.Equal(t, "MANAGE", m.InitialState)
	w := watcher(t, m, "manage_agents")
	require.Equal(t, "plugins", w["type"])
	require.Equal(t, map[string]any{
		"data_item": "spec", "purge_unknown": true, "plugin_manage_interval": "5m",
		"manager_machine_prefix": "eam", "plugins_directory": "/var/lib/choria/plugins/mcollective/agent",
	}, w["properties"])

	dir := filepath.Join(t.TempDir(), "plugins", "mcollective", "agent")
	def, err = RenderExternalAgents(ExternalAgentsOptions{PluginsDirectory: dir})
	require.NoError(t, err)
	m = validate(t, ExternalAgents, def)
	require.Equal(t, dir, watcher(t, m, "manage_agents")["properties"].(map[string]any)["plugins_directory"])
	require.Contains(t, string(def), "# Deploys external agents", "comments survive rendering")

	_, err = RenderExternalAgents(ExternalAgentsOptions{PluginsDirectory: "relative"})
	require.ErrorContains(t, err, "must be an absolute path")

	def, err = RenderExternalAgents(ExternalAgentsOptions{Interval: 20 * time.Second, ManageInterval: 15 * time.Second})
	require.NoError(t, err)
	w = watcher(t, validate(t, ExternalAgents, def), "manage_agents")
	require.Equal(t, "20s", w["interval"])
	require.Equal(t, "15s", w["properties"].(map[string]any)["plugin_manage_interval"])

	_, err = RenderExternalAgents(ExternalAgentsOptions{Interval: 1500 * time.Millisecond})
	require.ErrorContains(t, err, "whole number of seconds")
}

func TestRenderCheckChoria(t *testing.T) {
	def, err := RenderCheckChoria(30 * time.Second)
	require.NoError(t, err)
	m := validate(t, CheckChoria, def)
	require.Equal(t, "30s", watcher(t, m, "check")["interval"])

	def, err = RenderCheckChoria(0)
	require.NoError(t, err)
	require.Equal(t, "5m", watcher(t, validate(t, CheckChoria, def), "check")["interval"])

	_, err = RenderCheckChoria(-time.Second)
	require.ErrorContains(t, err, "whole number of seconds")
}

func TestRenderFacts(t *testing.T) {
	def, err := RenderFacts(FactsOptions{Interval: 15 * time.Second, Output: "/srv/lab/node 1/facts.json", MaintenanceTimeout: time.Hour})
	require.NoError(t, err)
	m := validate(t, Facts, def)

	w := watcher(t, m, "gather_facts")
	require.Equal(t, "15s", w["interval"])
	require.Equal(t, "1h", watcher(t, m, "maintenance_timeout")["properties"].(map[string]any)["timer"])
	require.Contains(t, string(def), "# the interval is a parameter")

	// no options gives the shipped machine, only reformatted
	plain, err := RenderFacts(FactsOptions{})
	require.NoError(t, err)
	orig, err := Definition(Facts)
	require.NoError(t, err)
	var a, b any
	require.NoError(t, yaml.Unmarshal(plain, &a))
	require.NoError(t, yaml.Unmarshal(orig, &b))
	require.Equal(t, b, a)

	_, err = RenderFacts(FactsOptions{Interval: 1500 * time.Millisecond})
	require.ErrorContains(t, err, "whole number of seconds")
	_, err = RenderFacts(FactsOptions{Output: "facts.json"})
	require.ErrorContains(t, err, "must be an absolute path")
	_, err = RenderFacts(FactsOptions{MaintenanceTimeout: -time.Second})
	require.ErrorContains(t, err, "whole number of seconds")

	def, err = RenderFacts(FactsOptions{Interval: 90 * time.Second})
	require.NoError(t, err)
	require.Equal(t, "90s", watcher(t, validate(t, Facts, def), "gather_facts")["interval"])
}

// TestFactsOutputReachesTheGatherer: the facts file's path, quoted with
// go-shellquote, reaches the gatherer as one argument, as it was given,
// through the exec watcher, which expands the command as a template and
// splits it with github.com/google/shlex (go-choria v0.30.2,
// aagent/watchers/execwatcher/exec.go); paths it cannot carry are refused.
func TestFactsOutputReachesTheGatherer(t *testing.T) {
	for _, out := range []string{
		"/etc/choria/facts.json",
		"/srv/lab/node 1/facts.json",
		"/a b/it's",
		`/q"uo"te/and\back\slash`,
		"/$HOME/`id`/$(id)/*?[x]/a;b|c&d<e>f(g)!h#i~j",
		"/tab\there/new\nline",
		"/ünïcödé/ファクト.json",
		"/'",
		"/x/''",
	} {
		def, err := RenderFacts(FactsOptions{Output: out})
		require.NoError(t, err, out)
		command := watcher(t, validate(t, Facts, def), "gather_facts")["properties"].(map[string]any)["command"].(string)
		tpl, err := template.New("machine").Parse(command)
		require.NoError(t, err, out)
		var expanded strings.Builder
		require.NoError(t, tpl.Execute(&expanded, nil), out)
		args, err := shlex.Split(expanded.String())
		require.NoError(t, err, "%q from %q", command, out)
		require.Equal(t, []string{"./gather", "--output", out}, args, "the command %q", command)
	}
	for _, out := range []string{"/cr\rhere", "/{{.}}/x"} {
		_, err := RenderFacts(FactsOptions{Output: out})
		require.ErrorContains(t, err, "would not pass on as written", out)
	}
}

// TestFactsMachineRuns runs the rendered machine with go-choria's runtime: it
// gathers once at start, after the exec watcher's random splay of up to 30s
// (fixed in v0.30.2), and then every interval.
func TestFactsMachineRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the exec watcher's start splay of up to 30s")
	}
	t.Parallel()

	out := filepath.Join(t.TempDir(), "facts.json")
	def, err := RenderFacts(FactsOptions{Interval: time.Second, Output: out})
	require.NoError(t, err)

	dir := place(t, Facts, def)
	// a stand in for the gatherer that records each run and its arguments
	script := "#!/bin/sh\n[ \"$1\" = --output ] || exit 1\necho run >> \"$2\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gather"), []byte(script), 0o755))

	m, rec := machinetest.Load(t, dir)
	machinetest.Start(t, m)
	rec.WaitFor(t, 5*time.Second, "Performing initial execution after")

	runs := func() int {
		dat, _ := os.ReadFile(out)
		return strings.Count(string(dat), "run\n")
	}

	require.Eventually(t, func() bool { return runs() >= 1 }, 35*time.Second, 50*time.Millisecond, "no gather at start, log:\n%s", strings.Join(rec.Lines(), "\n"))
	first := time.Now()
	require.Eventually(t, func() bool { return runs() >= 3 }, 5*time.Second, 50*time.Millisecond, "no gathers on the interval")
	require.GreaterOrEqual(t, time.Since(first), 1500*time.Millisecond, "runs are spaced by the interval")
	require.Equal(t, "GATHER", m.State())

	// maintenance stops gathering
	require.NoError(t, m.Transition("enter_maintenance"))
	require.Equal(t, "MAINTENANCE", m.State())
	time.Sleep(200 * time.Millisecond)
	n := runs()
	time.Sleep(2500 * time.Millisecond)
	require.Equal(t, n, runs(), "gathered during maintenance")

	// resuming gathers straight away, the state change forces a run
	require.NoError(t, m.Transition("resume"))
	require.Eventually(t, func() bool { return runs() > n }, 900*time.Millisecond, 20*time.Millisecond)
}
