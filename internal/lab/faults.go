package lab

import (
	"context"
	"fmt"
	"syscall"
)

// The faults a running lab can be given, as an operator would cause them:
// a process killed (and kept down, as a stopped service), a host's
// network links cut.

// Kill sends SIGKILL to a process of a host, as `kill -9` does. With hold
// the supervisor keeps it down until Resume, as a stopped service; without,
// it restarts it as after any crash.
func (r *Running) Kill(host, process string, hold bool) error {
	sp, err := r.supervisor.Find(host, process)
	if err != nil {
		return err
	}
	sp.Kill(syscall.SIGKILL, hold)
	return nil
}

// Resume starts a process held down by Kill again, at once.
func (r *Running) Resume(host, process string) error {
	sp, err := r.supervisor.Find(host, process)
	if err != nil {
		return err
	}
	sp.Resume()
	return nil
}

// ProcessRunning tells whether a process of a host runs now.
func (r *Running) ProcessRunning(host, process string) (bool, error) {
	sp, err := r.supervisor.Find(host, process)
	if err != nil {
		return false, err
	}
	return sp.Running(), nil
}

// Disconnect cuts every network link of a host, as pulled cables would.
func (r *Running) Disconnect(host string) error { return r.net.Disconnect(host) }

// Reconnect brings a disconnected host's links back.
func (r *Running) Reconnect(host string) error { return r.net.Reconnect(host) }

// WaitServing waits until every process of the host with a readiness
// address serves on it again.
func (r *Running) WaitServing(ctx context.Context, host string) error {
	for _, hp := range r.Plan.Hosts {
		if hp.Host.Name != host {
			continue
		}
		h, err := r.netHost(host)
		if err != nil {
			return err
		}
		for _, p := range hp.Processes {
			if p.Ready == "" {
				continue
			}
			if err := waitTCP(ctx, h, p.Ready); err != nil {
				return fmt.Errorf("%s on %s does not serve on %s: %w", p.Name, host, p.Ready, err)
			}
		}
		return nil
	}
	return fmt.Errorf("no host %q in the lab", host)
}
