package lab

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/reproducible-choria/deployment/internal/bootstrap"
)

// Layout names the files of one lab directory. Everything the lab keeps
// lives below Dir; nothing is written to the host's /etc.
type Layout struct{ Dir string }

func (l Layout) Docroot() string           { return filepath.Join(l.Dir, "docroot") }
func (l Layout) State() string             { return filepath.Join(l.Dir, "lab.json") }
func (l Layout) Lock() string              { return filepath.Join(l.Dir, "lock") }
func (l Layout) Host(name string) string   { return filepath.Join(l.Dir, "hosts", name) }
func (l Layout) NSRoot(name string) string { return filepath.Join(l.Host(name), "ns") }

// Credentials is the bootstrapper's output: the issuer, every role's
// credentials and configuration, and the operator's passwords.
func (l Layout) Credentials() bootstrap.Output {
	return bootstrap.Output{Dir: filepath.Join(l.Dir, "credentials")}
}

// HostEtcChoria is bound to a server's /etc/choria, where the provisioner's
// configuration and the server's keys land.
func (l Layout) HostEtcChoria(name string) string { return filepath.Join(l.Host(name), "etc-choria") }

// HostStateDir is bound to the role's state directory.
func (l Layout) HostStateDir(name string) string { return filepath.Join(l.Host(name), "state") }

// HostConfigDir is bound read-only to the configuration directory of a role
// whose configuration the lab writes itself (NATS).
func (l Layout) HostConfigDir(name string) string { return filepath.Join(l.Host(name), "config") }

// NixOSBin holds sh and env only, bound over every host's /usr/bin in a
// NixOS-like lab; Empty is bound over /usr/sbin.
func (l Layout) NixOSBin() string { return filepath.Join(l.Dir, "nixos-like", "bin") }
func (l Layout) Empty() string    { return filepath.Join(l.Dir, "nixos-like", "empty") }

// HostLogDir is bound to /var/log, where servers write their status file.
func (l Layout) HostLogDir(name string) string { return filepath.Join(l.Host(name), "log") }

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

// Provisioned tells whether a server holds the configuration and token the
// provisioner gave it.
func (l Layout) Provisioned(server string) bool {
	etc := l.HostEtcChoria(server)
	if _, err := os.Stat(filepath.Join(etc, "server.jwt")); err != nil {
		return false
	}
	conf, err := os.ReadFile(filepath.Join(etc, "server.conf"))
	return err == nil && strings.Contains(string(conf), "\nidentity=")
}
