package provhelper

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reproducible-choria/deployment/internal/duration"
)

func validConfig() Config {
	return Config{
		Settings:      map[string]string{"plugin.choria.middleware_hosts": "broker.choria.local:4222"},
		Permissions:   ServerPermissions{Streams: true},
		TokenValidity: duration.Of(43800 * time.Hour),
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		errs   []string // all must appear; none means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"provider choria repeated", func(c *Config) { c.Settings["plugin.security.provider"] = "choria" }, nil},
		{"provision false repeated", func(c *Config) { c.Settings["plugin.choria.server.provision"] = "false" }, nil},
		{"value with equals", func(c *Config) { c.Settings["plugin.login.url"] = "https://a/?x=y" }, nil},
		{"nil settings", func(c *Config) { c.Settings = nil }, []string{"settings: empty"}},
		{"identity", func(c *Config) { c.Settings["identity"] = "x.example" }, []string{`"identity" is set per server by the helper`}},
		{"identity upper case", func(c *Config) { c.Settings["IDENTITY"] = "x.example" }, []string{`"IDENTITY" is set per server`}},
		{"token file", func(c *Config) { c.Settings["plugin.security.choria.token_file"] = "/tmp/x.jwt" }, []string{"token_file\" is set per server"}},
		{"seed file", func(c *Config) { c.Settings["plugin.security.choria.seed_file"] = "/tmp/x.seed" }, []string{"seed_file\" is set per server"}},
		{"anon tls token file", func(c *Config) { c.Settings["plugin.choria.security.server.token_file"] = "/tmp/x" }, []string{"is set per server"}},
		{"anon tls seed file", func(c *Config) { c.Settings["plugin.choria.security.server.seed_file"] = "/tmp/x" }, []string{"is set per server"}},
		{"other provider", func(c *Config) { c.Settings["plugin.security.provider"] = "file" }, []string{`must be "choria"`}},
		{"provision true", func(c *Config) { c.Settings["plugin.choria.server.provision"] = "true" }, []string{`must be "false"`}},
		{"empty key", func(c *Config) { c.Settings[""] = "x" }, []string{"empty key"}},
		{"key with equals", func(c *Config) { c.Settings["identity=evil"] = "x" }, []string{"only letters, digits"}},
		{"key with space", func(c *Config) { c.Settings["identity "] = "x" }, []string{"only letters, digits"}},
		{"key with newline", func(c *Config) { c.Settings["a\nidentity"] = "x" }, []string{"only letters, digits"}},
		{"key starting with dot", func(c *Config) { c.Settings[".a"] = "x" }, []string{"must start with"}},
		{"comment key", func(c *Config) { c.Settings["#a"] = "x" }, []string{"only letters, digits"}},
		{"huge key", func(c *Config) { c.Settings[strings.Repeat("a", 300)] = "x" }, []string{"longer than 256"}},
		{"empty value", func(c *Config) { c.Settings["loglevel"] = "" }, []string{`"loglevel": empty value`}},
		{"value with newline", func(c *Config) { c.Settings["loglevel"] = "info\nidentity=evil" }, []string{"control character U+000A"}},
		{"value with CR", func(c *Config) { c.Settings["loglevel"] = "info\r" }, []string{"control character U+000D"}},
		{"value with NUL", func(c *Config) { c.Settings["loglevel"] = "in\x00fo" }, []string{"control character U+0000"}},
		{"value with line separator", func(c *Config) { c.Settings["loglevel"] = "in\u2028fo" }, []string{"control character U+2028"}},
		{"value with spaces", func(c *Config) { c.Settings["loglevel"] = " info" }, []string{"white space"}},
		{"invalid utf8", func(c *Config) { c.Settings["loglevel"] = "\xff" }, []string{"not valid UTF-8"}},
		{"huge value", func(c *Config) { c.Settings["loglevel"] = strings.Repeat("a", 5000) }, []string{"longer than 4096"}},
		{"governor without streams", func(c *Config) { c.Permissions = ServerPermissions{Governor: true} }, []string{"governor requires streams"}},
		{"no validity", func(c *Config) { c.TokenValidity = duration.Duration{} }, []string{"token_validity: missing"}},
		{"validity one hour", func(c *Config) { c.TokenValidity = duration.Of(time.Hour) }, []string{"too short"}},
		{"validity negative", func(c *Config) { c.TokenValidity = duration.Of(-time.Hour) }, []string{"too short"}},
		{"validity too long", func(c *Config) { c.TokenValidity = duration.Of(438000 * time.Hour) }, []string{"sanity limit"}},
		{"several errors reported together", func(c *Config) {
			c.Settings["identity"] = "x"
			c.TokenValidity = duration.Duration{}
		}, []string{"identity", "token_validity: missing"}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.errs)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name, json, err string
	}{
		{"valid", `{"settings":{"loglevel":"info"},"permissions":{"streams":true},"token_validity":"43800h"}`, ""},
		{"unknown field", `{"settings":{"loglevel":"info"},"token_valdity":"43800h"}`, `unknown field "token_valdity"`},
		{"unknown permission", `{"settings":{"loglevel":"info"},"permissions":{"admin":true},"token_validity":"2h"}`, `unknown field "admin"`},
		{"numeric duration", `{"settings":{"loglevel":"info"},"token_validity":157680000}`, "duration must be a string"},
		{"bad duration", `{"settings":{"loglevel":"info"},"token_validity":"5y"}`, "invalid duration"},
		{"non-string setting", `{"settings":{"registerinterval":60},"token_validity":"2h"}`, "cannot unmarshal number"},
		{"trailing data", `{"settings":{"loglevel":"info"},"token_validity":"2h"} {}`, "trailing data"},
		{"empty", ``, "decoding: EOF"},
		{"invalid", `{"settings":{"identity":"x"},"token_validity":"2h"}`, "invalid:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want it to contain %q", err, tc.err)
			}
		})
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	if _, err := LoadConfig(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"settings":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "settings: empty") {
		t.Errorf("invalid file: %v", err)
	}

	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, MaxConfigBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
}

// The example config is what the bootstrapper is expected to render.
func TestExampleConfigRoundTrips(t *testing.T) {
	c := testConfig(t)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("re-parsing marshalled config: %v", err)
	}
	if len(back.Settings) != len(c.Settings) || back.TokenValidity != c.TokenValidity || back.Permissions != c.Permissions {
		t.Errorf("round trip changed the config: %+v", back)
	}
}
