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
	Processes []Snapshot        `json:"processes,omitempty"`
}

func writeState(path string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing lab state: %w", err)
	}
	return os.Rename(tmp, path)
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
	if !alive(st.PID) {
		return nil, fmt.Errorf("%w in %s (its supervisor, pid %d, is gone)", ErrNotRunning, l.Dir, st.PID)
	}
	return &st, nil
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

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func removeState(l Layout) {
	_ = os.Remove(l.State())
	_ = os.Remove(filepath.Join(l.Dir, "lab.json.tmp"))
}
