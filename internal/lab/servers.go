package lab

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/reproducible-choria/deployment/topology"
)

// DefaultStartWindow is how many servers the lab keeps between their
// first start and answering: enough to keep the provisioner's workers and
// both starts of a server busy on every core, few enough that the
// machine does not spend its CPU on contention. Measured on 2 cores: all
// at once, 200 servers cost 1.6 CPU-s each and answered in 200-230 s.
func DefaultStartWindow() int { return 8 * runtime.NumCPU() }

// serverRun is one server's bring-up.
type serverRun struct {
	plan        HostPlan
	host        HostState
	procs       []*supervisor.Supervised
	provisioned bool
	// answered is when the server first ran provisioned and connected
	// (zero until then), CPU what it had used from its first start until
	// then: its own cost of coming up, whatever the fleet does around it.
	answered time.Duration
	cpu      float64
}

// serverProgress counts the servers in each stage of their bring-up.
type serverProgress struct{ started, provisioned, answering, total int }

func (p serverProgress) String() string {
	return fmt.Sprintf("servers: %d started, %d provisioned, %d answering of %d", p.started, p.provisioned, p.answering, p.total)
}

// bringUpServers starts the servers in order, at most window of them (all
// at once when window is not positive) between their first start and answering, and
// returns once every one is provisioned and connected with its
// provisioned identity, as its status file says. Phases.Provisioned and
// Phases.Answering are set on the way.
func (r *Running) bringUpServers(ctx context.Context, start time.Time, window int) error {
	hosts := hostsByName(r.State())
	for _, hp := range r.Plan.Hosts {
		if hp.Host.Role == topology.RoleServer {
			r.servers = append(r.servers, &serverRun{plan: hp, host: hosts[hp.Host.Name]})
		}
	}
	var p serverProgress
	p.total = len(r.servers)
	last, lastLog := serverProgress{}, time.Time{}
	err := poll.Until(ctx, 100*time.Millisecond, func() (bool, error) {
		p.provisioned, p.answering = 0, 0
		for _, s := range r.servers[:p.started] {
			r.observe(s, start)
			if s.provisioned {
				p.provisioned++
			}
			if s.answered > 0 {
				p.answering++
			}
		}
		for p.started < p.total && (window <= 0 || p.started-p.answering < window) {
			s := r.servers[p.started]
			_, procs, err := r.startHost(s.plan)
			if err != nil {
				return false, err
			}
			s.procs = procs
			p.started++
		}
		if p.provisioned == p.total && r.Phases.Provisioned == 0 {
			r.Phases.Provisioned = time.Since(start)
		}
		if p != last && (time.Since(lastLog) >= time.Second || p.answering == p.total) {
			r.log.Info(p.String())
			last, lastLog = p, time.Now()
		}
		return p.answering == p.total, nil
	})
	if err != nil {
		return r.serversError(p, err)
	}
	r.Phases.Answering = time.Since(start)
	return nil
}

// observe updates what a started server has reached.
func (r *Running) observe(s *serverRun, start time.Time) {
	if !s.provisioned {
		s.provisioned = r.Plan.Layout.Provisioned(s.host.Name)
	}
	if s.answered > 0 || !s.provisioned {
		return
	}
	if st, err := readServerStatus(s.host.StatusFile); err != nil || !st.answering(s.host.FQDN) {
		return
	}
	s.answered = time.Since(start)
	for _, sp := range s.procs {
		s.cpu += cpuSeconds(sp.PID())
	}
}

// serversError says which servers did not come up, and where to look.
func (r *Running) serversError(p serverProgress, err error) error {
	var unprovisioned, unconnected []string
	for _, s := range r.servers[:p.started] {
		switch {
		case !s.provisioned:
			unprovisioned = append(unprovisioned, s.host.Name)
		case s.answered == 0:
			unconnected = append(unconnected, s.host.Name)
		}
	}
	var why []string
	if len(unprovisioned) > 0 {
		why = append(why, fmt.Sprintf("not provisioned: %s (see the provisioner's log %s)", strings.Join(unprovisioned, ", "),
			r.Plan.Layout.ProcessLog(r.Plan.Topology.MustHost(topology.RoleProvisioner).Name, "provisioner")))
	}
	if len(unconnected) > 0 {
		why = append(why, fmt.Sprintf("provisioned but not connected: %s (see `choria-lab status` and the servers' logs)", strings.Join(unconnected, ", ")))
	}
	if n := p.total - p.started; n > 0 {
		why = append(why, fmt.Sprintf("%d not started yet", n))
	}
	return fmt.Errorf("%d of %d servers did not come up (%s): %s: %w", p.total-p.answering, p.total, p, strings.Join(why, "; "), err)
}
