// Package machines holds the autonomous agent definitions the servers run and
// renders the ones that take parameters. The files are embedded so the lab,
// the Nix build and the plugin packager deploy the same bytes the tests load.
package machines

import (
	"bytes"
	"embed"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/kballard/go-shellquote"
	"gopkg.in/yaml.v3"
)

//go:embed facts/machine.yaml check_choria/machine.yaml external_agents/machine.yaml
var files embed.FS

// Names of the shipped machines, also their directory names.
const (
	Facts          = "facts"
	CheckChoria    = "check_choria"
	ExternalAgents = "external_agents"
)

// Names lists every shipped machine.
func Names() []string {
	return []string{Facts, CheckChoria, ExternalAgents}
}

// Definition returns the machine.yaml of a shipped machine as written.
func Definition(name string) ([]byte, error) {
	dat, err := files.ReadFile(path.Join(name, "machine.yaml"))
	if err != nil {
		return nil, fmt.Errorf("unknown machine %q: %w", name, err)
	}
	return dat, nil
}

// FactsOptions are the parameters of the facts machine. Zero values keep
// what the shipped file says.
type FactsOptions struct {
	// Interval between gathers, the lab uses seconds instead of 10m.
	Interval time.Duration
	// Output is passed to the gatherer as --output when set.
	Output string
	// MaintenanceTimeout ends a forgotten maintenance state.
	MaintenanceTimeout time.Duration
}

// RenderFacts renders the facts machine with opts applied.
func RenderFacts(opts FactsOptions) ([]byte, error) {
	if opts.Interval < 0 || opts.Interval%time.Second != 0 {
		return nil, fmt.Errorf("facts interval %v must be a positive whole number of seconds", opts.Interval)
	}
	if opts.MaintenanceTimeout < 0 || opts.MaintenanceTimeout%time.Second != 0 {
		return nil, fmt.Errorf("maintenance timeout %v must be a positive whole number of seconds", opts.MaintenanceTimeout)
	}

	return render(Facts, func(doc *yaml.Node) error {
		if opts.Interval != 0 {
			err := setWatcherField(doc, "gather_facts", []string{"interval"}, formatDuration(opts.Interval))
			if err != nil {
				return err
			}
		}
		if opts.Output != "" {
			if !filepath.IsAbs(opts.Output) {
				return fmt.Errorf("facts output %q must be an absolute path", opts.Output)
			}
			// the exec watcher expands the command as a template, then splits it
			// with github.com/google/shlex, which takes a carriage return for a
			// space where go-shellquote leaves it unquoted
			if strings.Contains(opts.Output, "{{") || strings.ContainsRune(opts.Output, '\r') {
				return fmt.Errorf("facts output %q holds {{ or a carriage return, which the exec watcher would not pass on as written", opts.Output)
			}
			// the exec watcher splits the command shell style, quote it
			err := setWatcherField(doc, "gather_facts", []string{"properties", "command"}, shellquote.Join("./gather", "--output", opts.Output))
			if err != nil {
				return err
			}
		}
		if opts.MaintenanceTimeout != 0 {
			return setWatcherField(doc, "maintenance_timeout", []string{"properties", "timer"}, formatDuration(opts.MaintenanceTimeout))
		}
		return nil
	})
}

// RenderCheckChoria renders the Scout check with its check interval set;
// zero keeps the shipped 5m.
func RenderCheckChoria(interval time.Duration) ([]byte, error) {
	if interval < 0 || interval%time.Second != 0 {
		return nil, fmt.Errorf("check interval %v must be a positive whole number of seconds", interval)
	}
	return render(CheckChoria, func(doc *yaml.Node) error {
		if interval == 0 {
			return nil
		}
		return setWatcherField(doc, "check", []string{"interval"}, formatDuration(interval))
	})
}

// ExternalAgentsOptions are the parameters of the external agents machine.
type ExternalAgentsOptions struct {
	// PluginsDirectory is where agents are deployed, the mcollective/agent
	// directory below the server's plugin libdir.
	PluginsDirectory string
	// Interval between reads of the specification (the lab's are short).
	Interval time.Duration
	// ManageInterval between checks of each deployed plugin.
	ManageInterval time.Duration
}

// RenderExternalAgents renders the external agents machine with opts applied.
func RenderExternalAgents(opts ExternalAgentsOptions) ([]byte, error) {
	for name, d := range map[string]time.Duration{"interval": opts.Interval, "manage interval": opts.ManageInterval} {
		if d < 0 || d%time.Second != 0 {
			return nil, fmt.Errorf("external agents %s %v must be a positive whole number of seconds", name, d)
		}
	}
	return render(ExternalAgents, func(doc *yaml.Node) error {
		if opts.Interval != 0 {
			if err := setWatcherField(doc, "manage_agents", []string{"interval"}, formatDuration(opts.Interval)); err != nil {
				return err
			}
		}
		if opts.ManageInterval != 0 {
			if err := setWatcherField(doc, "manage_agents", []string{"properties", "plugin_manage_interval"}, formatDuration(opts.ManageInterval)); err != nil {
				return err
			}
		}
		if opts.PluginsDirectory == "" {
			return nil
		}
		if !filepath.IsAbs(opts.PluginsDirectory) {
			return fmt.Errorf("plugins directory %q must be an absolute path", opts.PluginsDirectory)
		}
		return setWatcherField(doc, "manage_agents", []string{"properties", "plugins_directory"}, opts.PluginsDirectory)
	})
}

// render edits the YAML node tree rather than a struct so comments and key
// order of the shipped file survive.
func render(name string, edit func(doc *yaml.Node) error) ([]byte, error) {
	src, err := Definition(name)
	if err != nil {
		return nil, err
	}

	doc := &yaml.Node{}
	err = yaml.Unmarshal(src, doc)
	if err != nil {
		return nil, fmt.Errorf("parsing %s machine: %w", name, err)
	}

	err = edit(doc)
	if err != nil {
		return nil, fmt.Errorf("rendering %s machine: %w", name, err)
	}

	buf := &bytes.Buffer{}
	enc := yaml.NewEncoder(buf)
	enc.SetIndent(2)
	err = enc.Encode(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding %s machine: %w", name, err)
	}
	err = enc.Close()
	if err != nil {
		return nil, fmt.Errorf("encoding %s machine: %w", name, err)
	}

	return buf.Bytes(), nil
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setWatcherField sets a scalar below the named watcher, the path must
// already exist so a typo cannot silently add an ignored key.
func setWatcherField(doc *yaml.Node, watcher string, path []string, value string) error {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return fmt.Errorf("not a YAML document")
	}

	watchers := mapValue(doc.Content[0], "watchers")
	if watchers == nil || watchers.Kind != yaml.SequenceNode {
		return fmt.Errorf("no watchers list")
	}

	for _, w := range watchers.Content {
		name := mapValue(w, "name")
		if name == nil || name.Value != watcher {
			continue
		}

		node := w
		for _, p := range path {
			node = mapValue(node, p)
			if node == nil {
				return fmt.Errorf("watcher %s has no %v", watcher, path)
			}
		}
		if node.Kind != yaml.ScalarNode {
			return fmt.Errorf("watcher %s field %v is not a scalar", watcher, path)
		}

		node.Value = value
		node.Tag = "!!str"
		node.Style = 0
		return nil
	}

	return fmt.Errorf("no watcher named %s", watcher)
}

// formatDuration writes d in the single unit form (90s, 10m, 24h) that the
// machine JSON schema accepts, time.Duration's 1m30s form it rejects.
func formatDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}
