package provhelper

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	choriaconfig "github.com/choria-io/go-choria/config"
)

// writeConf writes settings as a choria .conf file in the given line format.
func writeConf(t *testing.T, settings map[string]string, format string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# written by TestReplyLoadsInGoChoria\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&b, format, k, settings[k])
	}
	path := filepath.Join(t.TempDir(), "server.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReplyLoadsInGoChoria loads the reply's configuration with go-choria
// v0.30.2's own parser, in the "key=value" form the server's configure
// action writes and in the spaced form people write.
func TestReplyLoadsInGoChoria(t *testing.T) {
	reply := testHelper(t).Handle(bytes.NewReader(realRequest(t)))
	if reply.Defer {
		t.Fatalf("deferred: %s", reply.Msg)
	}

	for _, format := range []string{"%s=%s\n", "%s = %s\n"} {
		t.Run(strings.TrimSpace(format), func(t *testing.T) {
			path := writeConf(t, reply.Configuration, format)
			cfg, err := choriaconfig.NewConfig(path)
			if err != nil {
				t.Fatalf("go-choria could not load %s: %v", path, err)
			}

			checks := []struct{ name, got, want string }{
				{"identity", cfg.Identity, "s16.choria.local"},
				{"token file", cfg.Choria.ChoriaSecurityTokenFile, "/etc/choria/server.jwt"},
				{"seed file", cfg.Choria.ChoriaSecuritySeedFile, "/etc/choria/server.seed"},
				{"security provider", cfg.Choria.SecurityProvider, "choria"},
				{"status file", cfg.Choria.StatusFilePath, "/var/log/choria-status.json"},
				{"submission spool", cfg.Choria.SubmissionSpool, "/var/lib/choria/submission"},
				{"plugin signing key", cfg.Choria.AutonomousAgentPublicKey, reply.Configuration["plugin.machines.signing_key"]},
				{"facts file", cfg.FactSourceFile, "/etc/choria/facts.json"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
				}
			}
			if hosts := cfg.Choria.MiddlewareHosts; len(hosts) != 1 || hosts[0] != "broker.choria.local:4222" {
				t.Errorf("middleware hosts = %q", hosts)
			}
			if cfg.RegisterInterval != 60 || len(cfg.Registration) != 1 || cfg.Registration[0] != "inventory_content" {
				t.Errorf("registration = %q every %d s", cfg.Registration, cfg.RegisterInterval)
			}
			if !cfg.Choria.ExecutorEnabled || !cfg.Choria.AutonomousAgentsDownload {
				t.Errorf("executor %v, plugin download %v, want both enabled", cfg.Choria.ExecutorEnabled, cfg.Choria.AutonomousAgentsDownload)
			}
			// The server only stays out of provisioning when the option is
			// present and false (go-choria cmd/server_run.go shouldProvision).
			if !cfg.HasOption("plugin.choria.server.provision") || cfg.Choria.Provision {
				t.Errorf("provisioning: option present %v, value %v", cfg.HasOption("plugin.choria.server.provision"), cfg.Choria.Provision)
			}
			if got := cfg.Option("plugin.security.issuer.choria.public", ""); got != reply.Configuration["plugin.security.issuer.choria.public"] {
				t.Errorf("issuer public key = %q", got)
			}
		})
	}
}

// TestValidatedSettingsSurviveGoChoria shows the value rules are what the
// parser needs: each accepted value reads back unchanged.
func TestValidatedSettingsSurviveGoChoria(t *testing.T) {
	values := []string{"a=b=c", "https://x.example/?a=b&c=d", "with inner  spaces", "#notacomment", "ünïcode"}
	settings := map[string]string{}
	for i, v := range values {
		if err := validateSettingValue(v); err != nil {
			t.Fatalf("%q rejected: %v", v, err)
		}
		settings[fmt.Sprintf("plugin.test.v%d", i)] = v
	}
	cfg, err := choriaconfig.NewConfig(writeConf(t, settings, "%s=%s\n"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range settings {
		if got := cfg.Option(k, "<missing>"); got != v {
			t.Errorf("%s read back as %q, want %q", k, got, v)
		}
	}
}
