// Package requests implements the "requests" Choria external RPC agent: it
// performs HTTP requests and downloads files on the nodes it runs on.
//
// The server starts the agent binary once per request (see
// github.com/choria-io/go-external), so everything here is built per call and
// nothing is kept between requests.
package requests

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/choria-io/go-external/agent"
)

// Name is the agent name the server registers the binary under.
const Name = "requests"

// The JSON DDL is embedded so the binary, its tests and the plugin packager
// all use the very same bytes that the server and registry read from disk.
//
//go:embed requests.json
var ddlJSON []byte

// DDL returns the agent's JSON DDL as it is shipped next to the binary.
func DDL() []byte {
	return bytes.Clone(ddlJSON)
}

// Defaults. The timeout stays below the DDL's 120 s so the agent answers with
// a clear timeout error before the server kills it.
const (
	DefaultTimeout             = 100 * time.Second
	DefaultMaxBodyBytes        = 512 * 1024
	DefaultMaxRequestBodyBytes = 10 * 1024 * 1024
	DefaultMaxDownloadBytes    = 1024 * 1024 * 1024
	DefaultMaxRedirects        = 10
)

// Config bounds what a single invocation may do. Zero values take defaults.
type Config struct {
	// Timeout bounds a whole HTTP exchange including reading the body.
	Timeout time.Duration
	// MaxBodyBytes bounds the response body returned by the request action,
	// it travels back in the RPC reply so must stay small.
	MaxBodyBytes int64
	// MaxRequestBodyBytes bounds the file read for body_file.
	MaxRequestBodyBytes int64
	// MaxDownloadBytes bounds the size of a downloaded file.
	MaxDownloadBytes int64
	// MaxRedirects is how many redirects are followed.
	MaxRedirects int
	// Transport is used for HTTP, nil uses a clone of http.DefaultTransport.
	Transport http.RoundTripper

	// The policy: what a caller may make the agent touch. The agent runs
	// as root on every server, so each is closed when empty.

	// AllowedHosts are the URL hosts requests and downloads may reach,
	// redirects included: a host name (any port), host:port, or * for any.
	AllowedHosts []string
	// BodyFileDirectories are the directories body_file may read from.
	BodyFileDirectories []string
	// DownloadDirectories are the directories download may write into.
	DownloadDirectories []string
}

// Keys in the agent's plugin.d config file that override Config.
const (
	ConfigTimeout             = "timeout"
	ConfigMaxBodyBytes        = "max_body_bytes"
	ConfigMaxRequestBodyBytes = "max_request_body_bytes"
	ConfigMaxDownloadBytes    = "max_download_bytes"
	// comma-separated lists
	ConfigAllowedHosts        = "allowed_hosts"
	ConfigBodyFileDirectories = "body_file_directories"
	ConfigDownloadDirectories = "download_directories"
)

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxRequestBodyBytes <= 0 {
		c.MaxRequestBodyBytes = DefaultMaxRequestBodyBytes
	}
	if c.MaxDownloadBytes <= 0 {
		c.MaxDownloadBytes = DefaultMaxDownloadBytes
	}
	if c.MaxRedirects <= 0 {
		c.MaxRedirects = DefaultMaxRedirects
	}
	return c
}

// override applies the settings from the agent config file given by the
// server on every invocation.
func (c Config) override(settings map[string]string) (Config, error) {
	if v, ok := settings[ConfigTimeout]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("invalid agent configuration %s=%q: must be a positive duration like 30s", ConfigTimeout, v)
		}
		c.Timeout = d
	}

	for key, dst := range map[string]*int64{
		ConfigMaxBodyBytes:        &c.MaxBodyBytes,
		ConfigMaxRequestBodyBytes: &c.MaxRequestBodyBytes,
		ConfigMaxDownloadBytes:    &c.MaxDownloadBytes,
	} {
		v, ok := settings[key]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("invalid agent configuration %s=%q: must be a positive number of bytes", key, v)
		}
		*dst = n
	}

	for key, dst := range map[string]*[]string{
		ConfigAllowedHosts:        &c.AllowedHosts,
		ConfigBodyFileDirectories: &c.BodyFileDirectories,
		ConfigDownloadDirectories: &c.DownloadDirectories,
	} {
		v, ok := settings[key]
		if !ok {
			continue
		}
		*dst = nil
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*dst = append(*dst, item)
			}
		}
	}
	for _, d := range append(slices.Clone(c.BodyFileDirectories), c.DownloadDirectories...) {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			return c, fmt.Errorf("invalid agent configuration: directory %q must be an absolute, clean path", d)
		}
	}

	return c, nil
}

// allowHost refuses a URL whose host the policy does not list.
func (c Config) allowHost(u *url.URL) error {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	for _, h := range c.AllowedHosts {
		h = strings.ToLower(h)
		if h == "*" || h == host || (port != "" && h == net.JoinHostPort(host, port)) {
			return nil
		}
	}
	return badInput("host %s is not allowed by the agent's policy (%s in its configuration)", u.Host, ConfigAllowedHosts)
}

// allowURL refuses a URL that does not parse or whose host the policy
// does not list.
func (c Config) allowURL(raw string) error {
	u, err := parseURL(raw)
	if err != nil {
		return err
	}
	return c.allowHost(u)
}

// within finds the allowed directory holding path and path relative to
// it. path must be absolute and clean, with no .. in it.
func within(dirs []string, path, what, key string) (dir, rel string, err error) {
	if !filepath.IsAbs(path) {
		return "", "", badInput("%s %q must be an absolute path", what, path)
	}
	// Clean drops every .. of an absolute path, so a clean one has none
	if filepath.Clean(path) != path {
		return "", "", badInput("%s %q must be a clean path without ..", what, path)
	}
	for _, d := range dirs {
		if r, err := filepath.Rel(d, path); err == nil && filepath.IsLocal(r) {
			return d, r, nil
		}
	}
	return "", "", badInput("%s %s is outside the directories the agent's policy allows (%s in its configuration)", what, path, key)
}

// Agent holds the actions of the requests agent.
type Agent struct {
	cfg Config
}

// New creates the agent with cfg, zero fields take defaults.
func New(cfg Config) *Agent {
	return &Agent{cfg: cfg.withDefaults()}
}

// Action describes one implemented action: its handler and the Go types
// whose JSON fields are its inputs and outputs. Tests compare these with the
// DDL so the two cannot drift apart.
type Action struct {
	Name    string
	Handler agent.ActionHandler
	Input   any
	Output  any
}

// Actions lists every action the agent implements.
func (a *Agent) Actions() []Action {
	return []Action{
		{Name: "request", Handler: a.request, Input: RequestInput{}, Output: RequestOutput{}},
		{Name: "download", Handler: a.download, Input: DownloadInput{}, Output: DownloadOutput{}},
	}
}

// Register adds every action to an external agent.
func (a *Agent) Register(ea *agent.Agent) error {
	for _, act := range a.Actions() {
		err := ea.RegisterAction(act.Name, act.Handler)
		if err != nil {
			return fmt.Errorf("registering action %s: %w", act.Name, err)
		}
	}
	return nil
}

// parseInput decodes request data strictly: the server already rejects
// inputs missing from the DDL, this catches a DDL that drifted from the code.
func parseInput(req *agent.Request, rep *agent.Reply, target any) bool {
	data := req.Data
	if len(bytes.TrimSpace(data)) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		data = []byte("{}")
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(target)
	if err != nil {
		rep.InvalidData("invalid request data for %s#%s: %v", req.Agent, req.Action, err)
		return false
	}

	return true
}

// PolicyConfig is the agent's configuration file (plugin.d/requests beside
// the server's configuration) holding c's policy, in the key = value form
// the server hands the agent.
func PolicyConfig(c Config) []byte {
	var b strings.Builder
	b.WriteString("# What the requests agent may touch on this node; anything not listed is refused.\n")
	fmt.Fprintf(&b, "%s = %s\n", ConfigAllowedHosts, strings.Join(c.AllowedHosts, ","))
	fmt.Fprintf(&b, "%s = %s\n", ConfigBodyFileDirectories, strings.Join(c.BodyFileDirectories, ","))
	fmt.Fprintf(&b, "%s = %s\n", ConfigDownloadDirectories, strings.Join(c.DownloadDirectories, ","))
	return []byte(b.String())
}

// PolicyFromSettings is the configuration an agent configuration file's
// settings give, over the defaults (nothing allowed).
func PolicyFromSettings(settings map[string]string) (Config, error) {
	return Config{}.withDefaults().override(settings)
}
