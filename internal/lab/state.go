package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/reproducible-choria/deployment/internal/atomicfile"
	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/reproducible-choria/deployment/topology"
)

// State is what a running lab publishes in lab.json for the other
// sub-commands (shell, exec, status, logs, down).
type State struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Ready   bool      `json:"ready"`
	// TopologyFile is the topology the lab was built from; empty for the
	// built-in one.
	TopologyFile string `json:"topology_file,omitempty"`
	// Env is the environment of commands run inside the hosts.
	Env   []string    `json:"env"`
	Hosts []HostState `json:"hosts"`
}

// HostState is one host of a running lab.
type HostState struct {
	Name      string            `json:"name"`
	Role      string            `json:"role"`
	FQDN      string            `json:"fqdn"`
	Addresses map[string]string `json:"addresses"`
	AnchorPID int               `json:"anchor_pid"`
	// StatusFile is where a server's status file is on this machine.
	StatusFile string                `json:"status_file,omitempty"`
	Processes  []supervisor.Snapshot `json:"processes,omitempty"`
}

func writeState(path string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("writing lab state: %w", err)
	}
	return nil
}

// ErrNotRunning says no lab runs in the directory.
var ErrNotRunning = errors.New("no lab is running")

// ReadState loads lab.json of a running lab; a state left by a lab whose
// supervisor is gone counts as not running.
func ReadState(l Layout) (*State, error) {
	b, err := os.ReadFile(l.State())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (start one with `choria-lab up`)", ErrNotRunning, l.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading lab state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s is damaged: %w", l.State(), err)
	}
	// the lab's lock, not its pid: after a crash the pid may be another
	// process's, which `down` would then signal as root
	if !lockHeld(l) {
		return nil, fmt.Errorf("%w in %s (its supervisor, pid %d, is gone: lab.json is left from a lab that did not stop)", ErrNotRunning, l.Dir, st.PID)
	}
	return &st, nil
}

// Topology is the topology the lab runs: its file (or the built-in one)
// with the lab's numbers of brokers and servers.
func (s *State) Topology() (*topology.Topology, error) {
	roles := map[string]int{}
	for _, h := range s.Hosts {
		roles[h.Role]++
	}
	return loadTopology(s.TopologyFile, roles[topology.RoleServer], roles[topology.RoleBroker])
}

// Host finds a host by short name or FQDN.
func (s *State) Host(name string) (*HostState, error) {
	for i := range s.Hosts {
		if s.Hosts[i].Name == name || s.Hosts[i].FQDN == name {
			return &s.Hosts[i], nil
		}
	}
	var names []string
	for _, h := range s.Hosts {
		names = append(names, h.Name)
	}
	return nil, fmt.Errorf("no host %q in the lab (hosts: %v)", name, names)
}

// lockHeld tells whether a running `choria-lab up` holds the directory's
// lock: the kernel releases it when that process ends, however it ends.
func lockHeld(l Layout) bool {
	f, err := os.Open(l.Lock())
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func removeState(l Layout) {
	_ = os.Remove(l.State())
	// and what a writer that crashed left of it (atomicfile's temporaries)
	leftovers, _ := filepath.Glob(filepath.Join(l.Dir, "."+filepath.Base(l.State())+"*"))
	for _, p := range leftovers {
		if atomicfile.IsTemp(filepath.Base(p)) {
			_ = os.Remove(p)
		}
	}
}
