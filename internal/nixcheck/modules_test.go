package nixcheck

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/reproducible-choria/deployment/internal/testenv"
)

var (
	hashAttrRE = regexp.MustCompile(`(?m)^\s*(hash|vendorHash)\s*=\s*"([^"]*)"\s*;`)
	sriRE      = regexp.MustCompile(`^sha256-[A-Za-z0-9+/]{43}=$`)
	goSumRE    = regexp.MustCompile(`(?m)^\s*sum\s*=\s*"([^"]*)"\s*;`)
	h1RE       = regexp.MustCompile(`^h1:[A-Za-z0-9+/]{43}=$`)
)

// TestPackageHashesWellFormed checks every hash in pkgs/ is an SRI sha256
// (a typo there only shows when someone builds on a machine with Nix).
func TestPackageHashesWellFormed(t *testing.T) {
	root := testenv.ModuleRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "pkgs", "*.nix"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		for _, m := range hashAttrRE.FindAllStringSubmatch(string(b), -1) {
			if !sriRE.MatchString(m[2]) {
				t.Errorf("pkgs/%s: %s = %q is not an SRI sha256 hash", name, m[1], m[2])
			}
		}
		for _, m := range goSumRE.FindAllStringSubmatch(string(b), -1) {
			if !h1RE.MatchString(m[1]) {
				t.Errorf("pkgs/%s: sum = %q is not a go.sum h1: hash", name, m[1])
			}
		}
	}
}

// evalModules evaluates testdata/eval-modules.nix with the nixpkgs lib at
// NIXPKGS_LIB, or skips.
func evalModules(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	out, err := nixEval(t, "internal/nixcheck/testdata/eval-modules.nix",
		"--arg", "nixpkgsLib", nixpkgsLib(t, "no module evaluation"), "--arg", "root", "./.")
	if err != nil {
		t.Fatalf("evaluating the modules failed: %v", err)
	}
	var res map[string]json.RawMessage
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

type service struct {
	ServiceConfig struct {
		ExecStart      string   `json:"ExecStart"`
		ExecStartPre   []string `json:"ExecStartPre"`
		LoadCredential []string `json:"LoadCredential"`
		User           string   `json:"User"`
	} `json:"serviceConfig"`
}

type evaluated struct {
	Systemd struct {
		Services map[string]service `json:"services"`
	} `json:"systemd"`
}

// TestModulesEvaluate evaluates every nixosModules entry and the flake's
// outputs with lib.evalModules, then runs the configuration scripts the
// modules generate against fake credentials.
func TestModulesEvaluate(t *testing.T) {
	res := evalModules(t)

	var names []string
	if err := json.Unmarshal(res["nixosModules"], &names); err != nil {
		t.Fatal(err)
	}
	want := []string{"choria-aaasvc", "choria-broker", "choria-client", "choria-plugins-webserver",
		"choria-provisioner", "choria-server", "choria-stream-replicator", "lab"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("nixosModules = %q, want %q", names, want)
	}

	var pkgs map[string]struct {
		Meta struct {
			License     any    `json:"license"`
			MainProgram string `json:"mainProgram"`
			Platforms   any    `json:"platforms"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(res["packages"], &pkgs); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"choria", "choria-provisioner", "aaasvc", "stream-replicator", "choria-reference"} {
		m, ok := pkgs[p]
		if !ok {
			t.Errorf("packages has no %s", p)
			continue
		}
		if m.Meta.License == nil || m.Meta.MainProgram == "" || m.Meta.Platforms == nil {
			t.Errorf("packages.%s: meta needs license, mainProgram and platforms: %+v", p, m.Meta)
		}
	}

	var modules map[string]evaluated
	if err := json.Unmarshal(res["modules"], &modules); err != nil {
		t.Fatal(err)
	}

	bash, errBash := exec.LookPath("bash")
	_, errJQ := exec.LookPath("jq")
	if errBash != nil || errJQ != nil {
		t.Log("bash or jq missing: configuration scripts not run")
		return
	}

	cases := []struct {
		scenario, unit, file string
		want                 []string
	}{
		{"broker", "choria-broker", "choria-broker/broker.conf", []string{
			"identity = broker.example.net\n",
			"plugin.choria.middleware_hosts = nats://broker.example.net:4222,nats://broker2.example.net:4222\n",
			"plugin.choria.network.system.password = secret of plugin_choria_network_system_password\n",
			"plugin.security.issuer.choria.public = secret of plugin_security_issuer_choria_public\n",
			"plugin.security.choria.seed_file = CREDS/plugin_security_choria_seed_file\n",
			// a single broker makes its streams at once
			"plugin.choria.network.stream.event_replicas = 1\n",
		}},
		{"broker-cluster", "choria-broker", "choria-broker/broker.conf", []string{
			"identity = broker2.example.net\n",
			"plugin.choria.network.peers = nats://broker1.example.net:5222,nats://broker2.example.net:5222,nats://broker3.example.net:5222\n",
			// a cluster's once it has formed, one replica a peer
			"plugin.choria.network.stream.event_replicas = -1\n",
			"plugin.choria.network.stream.leader_election_replicas = -1\n",
		}},
		{"server", "choria-server", "choria-server/server.conf", []string{
			"registerinterval = 60\n",
			"plugin.security.choria.token_file = CREDS/plugin_security_choria_token_file\n",
		}},
		{"provisioner", "choria-provisioner", "choria-provisioner/provisioner.yaml", []string{
			`"token":"secret of token"`,
			`"jwt_signing_key":"CREDS/jwt_signing_key"`,
			`"helper":"/bin/choria-provision-helper --config /etc/helper.json"`,
		}},
		{"provisioner", "choria-provisioner", "choria-provisioner/choria.cfg", []string{
			"identity = provisioner_signer\n",
			"plugin.security.choria.seed_file = CREDS/choria-plugin_security_choria_seed_file\n",
		}},
		{"aaasvc", "aaasvc", "aaasvc/aaa.conf", []string{
			`"users":[{"username":"admin"}]`,
			`"signing_seed":"CREDS/basicjwt_signer_signing_seed"`,
			`"choria_config":"/run/aaasvc/choria.conf"`,
		}},
		{"replicator", "stream-replicator", "stream-replicator/sr.yaml", []string{
			`"source_choria":{"collective":"choria","seed_file":"CREDS/streams_0_source_choria_seed_file"}`,
		}},
	}
	for _, c := range cases {
		svc, ok := modules[c.scenario].Systemd.Services[c.unit]
		if !ok {
			t.Errorf("%s: no systemd service %s", c.scenario, c.unit)
			continue
		}
		tmp := t.TempDir()
		creds := filepath.Join(tmp, "credentials")
		if err := os.MkdirAll(creds, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, lc := range svc.ServiceConfig.LoadCredential {
			id, _, _ := strings.Cut(lc, ":")
			content := "secret of " + id + "\n"
			if strings.HasSuffix(id, "users") {
				content = `[{"username":"admin"}]`
			}
			if err := os.WriteFile(filepath.Join(creds, id), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		run := filepath.Join(tmp, "run")
		for _, script := range svc.ServiceConfig.ExecStartPre {
			script = strings.ReplaceAll(script, "/run/", run+"/")
			script = strings.ReplaceAll(script, "/usr/bin/jq", "jq")
			if err := os.MkdirAll(filepath.Join(run, c.unit), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(run, filepath.Dir(c.file)), 0o700); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bash, "-euo", "pipefail", "-c", script)
			cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: configuration script failed: %v\n%s\n%s", c.scenario, err, out, script)
			}
		}
		b, err := os.ReadFile(filepath.Join(run, c.file))
		if err != nil {
			t.Errorf("%s: %v", c.scenario, err)
			continue
		}
		got := strings.ReplaceAll(string(b), creds, "CREDS")
		if strings.HasSuffix(c.file, ".yaml") || strings.HasSuffix(c.file, "aaa.conf") {
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Errorf("%s: %s is not JSON: %v", c.scenario, c.file, err)
			}
			compact, _ := json.Marshal(v)
			got = strings.ReplaceAll(string(compact), creds, "CREDS")
		}
		got = strings.ReplaceAll(got, run+"/", "/run/")
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %s lacks %q:\n%s", c.scenario, c.file, w, got)
			}
		}
	}
}
