package nixcheck

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/reproducible-choria/deployment/machines"
	"github.com/reproducible-choria/deployment/topology"
)

// Stand-in store paths of eval-modules.nix.
const (
	standInReference = "/nix/store/00000000000000000000000000000000-choria-reference/bin/"
	standInPlugins   = "/nix/store/00000000000000000000000000000000-choria-plugins-0.1.0"
	labCredentials   = "/var/lib/choria-lab/credentials"
)

// TestPluginScripts runs the shell the Nix side generates around
// choria-plugin-pack with this repository's programs: the choria-plugins
// build, then the lab profile's signing on the bootstrapping host and its
// machine set-up on a server, and checks what they write.
func TestPluginScripts(t *testing.T) {
	res := evalModules(t)
	var scripts struct{ Build, Bootstrap, Server, Client, Docroot string }
	if err := json.Unmarshal(res["pluginScripts"], &scripts); err != nil {
		t.Fatal(err)
	}
	bash := requireTool(t, "bash")
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	testenv.Build(t, bin, "./cmd/choria-plugin-pack", "./cmd/requests", "./cmd/choria-bootstrap", "./cmd/choria-facts")

	out := filepath.Join(tmp, "choria-plugins")
	creds := filepath.Join(tmp, "credentials")
	etc := filepath.Join(tmp, "etc")
	home := filepath.Join(tmp, "root")
	docroot := filepath.Join(tmp, "srv")
	subst := strings.NewReplacer(standInReference, bin+"/", standInPlugins, out, labCredentials, creds, "/etc/choria/", etc+"/",
		"/root/", home+"/", "/srv/choria-plugins", docroot)
	run := func(what, script string) {
		t.Helper()
		cmd := exec.Command(bash, "-euo", "pipefail", "-c", subst.Replace(script))
		cmd.Env = append(os.Environ(), "out="+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s\n%s", what, err, b, subst.Replace(script))
		}
	}

	run("choria-plugins build", scripts.Build)
	var archives []string
	entries, err := os.ReadDir(filepath.Join(out, "docroot"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		archives = append(archives, e.Name())
	}
	if len(archives) != 2 || !strings.HasPrefix(archives[0], "check_choria-") || !strings.HasPrefix(archives[1], "requests-agent_") {
		t.Errorf("docroot holds %q, want the check_choria and requests archives", archives)
	}
	for manifest, plugin := range map[string]string{"server-plugins.json": "requests", "kv-plugins.json": "check_choria"} {
		b, err := os.ReadFile(filepath.Join(out, manifest))
		if err != nil {
			t.Fatal(err)
		}
		var m []struct{ Name, Source, Checksum string }
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		if len(m) != 1 || m[0].Name != plugin || !strings.HasPrefix(m[0].Source, "http://plugins.choria.local/") || len(m[0].Checksum) != 64 {
			t.Errorf("%s = %s", manifest, b)
		}
	}

	// The bootstrapping host: credentials (as its choria-bootstrap line
	// would make them), then the signing line of its script.
	boot := exec.Command(filepath.Join(bin, "choria-bootstrap"), "--out", creds, "--timings", "lab", "--provision-helper", "/bin/true")
	if b, err := boot.CombinedOutput(); err != nil {
		t.Fatalf("choria-bootstrap: %v\n%s", err, b)
	}
	var sign []string
	for _, line := range strings.Split(scripts.Bootstrap, "\n") {
		if strings.Contains(line, "choria-plugin-pack sign ") {
			sign = append(sign, line)
		}
	}
	if len(sign) != 1 {
		t.Fatalf("the bootstrapping host's script has %d signing lines, want 1:\n%s", len(sign), scripts.Bootstrap)
	}
	run("signing", sign[0])

	run("server machines", scripts.Server)
	for _, f := range []string{"machine/facts/machine.yaml", "machine/facts/gather", "machine/external_agents/machine.yaml", "machine/external_agents/machine_data.json"} {
		if _, err := os.Stat(filepath.Join(etc, f)); err != nil {
			t.Errorf("the server's start-up did not write /etc/choria/%s: %v", f, err)
		}
	}
	md, err := os.ReadFile(filepath.Join(etc, "machine/external_agents/machine_data.json"))
	if err == nil {
		var data struct {
			Spec struct {
				Plugins   []byte `json:"plugins"`
				Signature string `json:"signature"`
			} `json:"spec"`
		}
		manifest, _ := os.ReadFile(filepath.Join(out, "server-plugins.json"))
		if err := json.Unmarshal(md, &data); err != nil || string(data.Spec.Plugins) != string(manifest) || data.Spec.Signature == "" {
			t.Errorf("machine_data.json does not hold the signed server-plugins.json (%v): %s", err, md)
		}
	}
	facts, err := os.ReadFile(filepath.Join(etc, "machine/facts/machine.yaml"))
	if err == nil && !strings.Contains(string(facts), "interval: 1m") {
		t.Errorf("the facts machine does not gather at the lab's interval:\n%s", facts)
	}

	// The machines the Nix side installs must be what the namespace lab
	// renders with machines.Render*, at the lab's timings.
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := topo.Timing("lab")
	if err != nil {
		t.Fatal(err)
	}
	wantEA, err := machines.RenderExternalAgents(machines.ExternalAgentsOptions{
		PluginsDirectory: filepath.Join(topo.Roles[topology.RoleServer].StateDir, "plugins", "mcollective", "agent"),
		Interval:         tm.PluginsInterval.Duration, ManageInterval: tm.PluginsManageInterval.Duration,
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(etc, "machine/external_agents/machine.yaml"), wantEA)

	// The client's home: ~/credentials and ~/plugins/check_choria.
	client := scripts.Client
	if i := strings.LastIndex(client, "done\n"); i >= 0 {
		client = client[i+len("done\n"):] // after copying its credentials (chown needs root)
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	run("client home", client)
	if dst, err := os.Readlink(filepath.Join(home, "credentials")); err != nil || dst != filepath.Join(creds, "client") {
		t.Errorf("~/credentials links to %q (%v), want the client's credentials", dst, err)
	}
	wantCC, err := machines.RenderCheckChoria(tm.ScoutCheckInterval.Duration)
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(home, "plugins/check_choria/machine.yaml"), wantCC)

	// The plugins host's docroot.
	run("plugins docroot", scripts.Docroot)
	served, _ := os.ReadDir(docroot)
	if len(served) != len(archives) {
		t.Errorf("the docroot holds %d files, want choria-plugins' %d", len(served), len(archives))
	}
}

// sameFile compares YAML documents by content (machines.Render* re-encodes
// the shipped file, blank lines aside).
func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	var g, w any
	if err := yaml.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if err := yaml.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s differs from what the namespace lab renders:\n--- got\n%s\n--- want\n%s", filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path), got, want)
	}
}
