package provhelper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reproducible-choria/deployment/internal/duration"
)

const (
	// MaxConfigBytes bounds the config file read; a rendered config is a few KiB.
	MaxConfigBytes = 1 << 20

	// minTokenValidity mirrors the provisioner: it replaces any server token
	// validity of an hour or less with its own default (host/host.go), so
	// such a setting would silently not take effect.
	minTokenValidity = time.Hour
	// maxTokenValidity is a sanity bound (10 years) against typos like "438000h".
	maxTokenValidity = 10 * 365 * 24 * time.Hour

	// maxKeyLen and maxValueLen keep every rendered line far below the 64 KiB
	// line limit of go-choria's config scanner, which silently stops reading
	// the rest of the file at an overlong line.
	maxKeyLen   = 256
	maxValueLen = 4096
)

// Keys the helper writes itself, per request.
const (
	KeyIdentity         = "identity"
	KeyTokenFile        = "plugin.security.choria.token_file"
	KeySeedFile         = "plugin.security.choria.seed_file"
	KeySecurityProvider = "plugin.security.provider"
	KeyProvision        = "plugin.choria.server.provision"

	// The server-anon-TLS variants point at other token and seed files;
	// letting settings set them would split where the server looks for its
	// credentials.
	keyServerTokenFile = "plugin.choria.security.server.token_file"
	keyServerSeedFile  = "plugin.choria.security.server.seed_file"
)

// Config is what the credential bootstrapper renders for the helper. It holds
// no secrets: the servers' tokens are signed by the provisioner itself.
type Config struct {
	// Settings are written verbatim into every server's configuration (flat
	// choria .conf keys to values).
	Settings map[string]string `json:"settings"`

	// Permissions are granted to every server's JWT.
	Permissions ServerPermissions `json:"permissions"`

	// TokenValidity is how long issued server tokens are valid; the reply
	// carries now+TokenValidity as an absolute Unix time.
	TokenValidity duration.Duration `json:"token_validity"`
}

// ServerPermissions uses the JSON names of tokens.ServerPermissions
// (github.com/choria-io/tokens v0.0.4), which the provisioner decodes
// server_claims.permissions into. Not reused directly because importing the
// tokens package doubles the helper's start-up time.
type ServerPermissions struct {
	Submission  bool `json:"submission,omitempty"`
	Streams     bool `json:"streams,omitempty"`
	Governor    bool `json:"governor,omitempty"`
	ServiceHost bool `json:"service_host,omitempty"`
}

func (p ServerPermissions) any() bool {
	return p.Submission || p.Streams || p.Governor || p.ServiceHost
}

// Validate checks the config is complete and cannot produce a server
// configuration that the helper does not control.
func (c *Config) Validate() error {
	var errs []error

	if len(c.Settings) == 0 {
		errs = append(errs, errors.New("settings: empty, servers would get no broker or security settings"))
	}

	for _, k := range slices.Sorted(maps.Keys(c.Settings)) { // stable error order
		v := c.Settings[k]
		if err := validateSettingKey(k); err != nil {
			errs = append(errs, fmt.Errorf("settings: %w", err))
			continue
		}
		if err := checkReserved(k, v); err != nil {
			errs = append(errs, fmt.Errorf("settings: %w", err))
			continue
		}
		if err := validateSettingValue(v); err != nil {
			errs = append(errs, fmt.Errorf("settings: %q: %w", k, err))
		}
	}

	if c.Permissions.Governor && !c.Permissions.Streams {
		errs = append(errs, errors.New("permissions: governor requires streams"))
	}

	v := c.TokenValidity.Duration
	switch {
	case v == 0:
		errs = append(errs, errors.New("token_validity: missing, give a duration such as \"43800h\""))
	case v <= minTokenValidity:
		errs = append(errs, fmt.Errorf("token_validity: %s is too short, the provisioner ignores validities of %s or less", v, minTokenValidity))
	case v > maxTokenValidity:
		errs = append(errs, fmt.Errorf("token_validity: %s is longer than the %s sanity limit", v, maxTokenValidity))
	}

	if len(errs) == 0 {
		return nil
	}
	// One line: operators read this in a service log.
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// checkReserved rejects settings for keys the helper writes itself; the
// fixed-value ones may be repeated with the same value, as a topology may
// naturally carry them.
func checkReserved(k, v string) error {
	switch strings.ToLower(k) {
	case KeyIdentity, KeyTokenFile, KeySeedFile, keyServerTokenFile, keyServerSeedFile:
		return fmt.Errorf("%q is set per server by the helper and may not appear in settings", k)
	case KeySecurityProvider:
		if v != "choria" {
			return fmt.Errorf("%q must be \"choria\" (the helper configures choria token and seed files), got %q", k, v)
		}
	case KeyProvision:
		// Without false the server's provisioning.jwt default (chpd) sends a
		// freshly provisioned server straight back into provisioning.
		if v != "false" {
			return fmt.Errorf("%q must be \"false\", got %q", k, v)
		}
	}
	return nil
}

// validateSettingKey accepts what go-choria's config parser reads back as the
// same key: its line regexp splits on the first '=' and trims spaces.
func validateSettingKey(k string) error {
	if k == "" {
		return errors.New("empty key")
	}
	if len(k) > maxKeyLen {
		return fmt.Errorf("key %.32q... longer than %d bytes", k, maxKeyLen)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return fmt.Errorf("key %q: only letters, digits, '_', '.' and '-' are allowed", k)
		}
	}
	if k[0] == '.' || k[0] == '-' {
		return fmt.Errorf("key %q must start with a letter, digit or '_'", k)
	}
	return nil
}

// validateSettingValue rejects what would not survive a key=value line: line
// breaks (config injection), other control bytes, surrounding spaces (the
// parser trims them) and empty values (the parser skips "key=").
func validateSettingValue(v string) error {
	if v == "" {
		return errors.New("empty value (go-choria ignores \"key=\" lines)")
	}
	if len(v) > maxValueLen {
		return fmt.Errorf("value longer than %d bytes", maxValueLen)
	}
	if !utf8.ValidString(v) {
		return errors.New("value is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\u0085' {
			return fmt.Errorf("value contains control character %U", r)
		}
	}
	if strings.TrimSpace(v) != v {
		return errors.New("value has leading or trailing white space, which go-choria would strip")
	}
	return nil
}

// ParseConfig decodes and validates a config. Unknown fields are errors so a
// misspelt key does not silently fall back to a default.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("decoding: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, errors.New("decoding: trailing data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("invalid: %w", err)
	}
	return c, nil
}

// LoadConfig reads, decodes and validates the config file at path.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: reading: %w", path, err)
	}
	if len(data) > MaxConfigBytes {
		return Config{}, fmt.Errorf("config %s: larger than %d bytes", path, MaxConfigBytes)
	}

	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}
