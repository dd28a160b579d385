package lab

import (
	"os"
	"path/filepath"
)

// Layout names the files of one lab directory. Everything the lab keeps
// lives below Dir; nothing is written to the host's /etc.
type Layout struct{ Dir string }

func (l Layout) Credentials() string       { return filepath.Join(l.Dir, "credentials") }
func (l Layout) Docroot() string           { return filepath.Join(l.Dir, "docroot") }
func (l Layout) State() string             { return filepath.Join(l.Dir, "lab.json") }
func (l Layout) Lock() string              { return filepath.Join(l.Dir, "lock") }
func (l Layout) Host(name string) string   { return filepath.Join(l.Dir, "hosts", name) }
func (l Layout) NSRoot(name string) string { return filepath.Join(l.Host(name), "ns") }

// HostEtcChoria is bound to a server's /etc/choria, where the provisioner's
// configuration and the server's keys land.
func (l Layout) HostEtcChoria(name string) string { return filepath.Join(l.Host(name), "etc-choria") }

// HostState is bound to the role's state directory.
func (l Layout) HostState(name string) string { return filepath.Join(l.Host(name), "state") }

// HostConfig is bound read-only to the configuration directory of a role
// whose configuration the lab writes itself (NATS).
func (l Layout) HostConfig(name string) string { return filepath.Join(l.Host(name), "config") }

// NixOSBin holds sh and env only, bound over every host's /usr/bin in a
// NixOS-like lab; Empty is bound over /usr/sbin.
func (l Layout) NixOSBin() string { return filepath.Join(l.Dir, "nixos-like", "bin") }
func (l Layout) Empty() string    { return filepath.Join(l.Dir, "nixos-like", "empty") }

// HostLog is bound to /var/log, where servers write their status file.
func (l Layout) HostLog(name string) string { return filepath.Join(l.Host(name), "log") }

// HostHome is the host's /root.
func (l Layout) HostHome(name string) string { return filepath.Join(l.NSRoot(name), "root") }

// Logs is where the output of a host's supervised processes goes.
func (l Layout) Logs(host string) string { return filepath.Join(l.Dir, "logs", host) }

func (l Layout) ProcessLog(host, proc string) string {
	return filepath.Join(l.Logs(host), proc+".log")
}

// DefaultDir is the lab directory under the user's state directory.
func DefaultDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "choria-lab")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "choria-lab")
	}
	return filepath.Join(home, ".local", "state", "choria-lab")
}
