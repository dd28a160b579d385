package lab

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/reproducible-choria/deployment/topology"
)

// netHost is a host of the running lab's network.
func (r *Running) netHost(name string) (*netlab.Host, error) {
	h, ok := r.net.Host(name)
	if !ok {
		return nil, fmt.Errorf("host %s is missing from the network", name)
	}
	return h, nil
}

// startHost puts every process of a host under supervision; the processes
// it returns are hp.Processes', in order.
func (r *Running) startHost(hp HostPlan) (*netlab.Host, []*supervisor.Supervised, error) {
	h, err := r.netHost(hp.Host.Name)
	if err != nil {
		return nil, nil, err
	}
	procs := make([]*supervisor.Supervised, 0, len(hp.Processes))
	for _, p := range hp.Processes {
		sp, err := r.supervisor.Start(h, p.program(r.Plan.Layout, hp.Host.Name, r.Plan.Env, r.progs.Setpriv))
		if err != nil {
			return nil, nil, err
		}
		procs = append(procs, sp)
	}
	return h, procs, nil
}

// startRole starts every process of the role's hosts and waits until they serve.
func (r *Running) startRole(ctx context.Context, role string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(r.Plan.Hosts))
	for _, hp := range r.Plan.Hosts {
		if hp.Host.Role != role {
			continue
		}
		h, procs, err := r.startHost(hp)
		if err != nil {
			return err
		}
		for i, p := range hp.Processes {
			if p.Ready == "" {
				continue
			}
			sp := procs[i]
			wg.Add(1)
			go func(p Process) {
				defer wg.Done()
				// a program that keeps dying will not serve: say so now,
				// not when the whole bring-up times out
				wctx, cancel := context.WithCancelCause(ctx)
				defer cancel(nil)
				go func() {
					_ = poll.Until(wctx, 50*time.Millisecond, func() (bool, error) {
						if n := sp.Restarts(); n >= startupDeaths {
							cancel(fmt.Errorf("it died %d times", n))
							return true, nil
						}
						return false, nil
					})
				}()
				if err := waitTCP(wctx, h, p.Ready); err != nil {
					if cause := context.Cause(wctx); cause != nil && ctx.Err() == nil {
						err = cause
					}
					errs <- fmt.Errorf("%s on %s did not start serving on %s: %w (see %s)", p.Name, hp.Host.Name, p.Ready, err, r.Plan.Layout.ProcessLog(hp.Host.Name, p.Name))
				}
			}(p)
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// waitTCP waits until addr accepts connections from inside the host.
func waitTCP(ctx context.Context, h *netlab.Host, addr string) error {
	return poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := h.DialContext(dctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil, nil
	})
}

// makeTargetStream makes the replicator's target stream on the NATS host
// where the replicator cannot (NATSTargetStreamArgs), as the NATS
// service's user.
func (r *Running) makeTargetStream(ctx context.Context) error {
	args := NATSTargetStreamArgs(r.Plan.Topology)
	if args == nil {
		return nil
	}
	for _, hp := range r.Plan.Hosts {
		if hp.Host.Role != topology.RoleNATS {
			continue
		}
		h, err := r.netHost(hp.Host.Name)
		if err != nil {
			return err
		}
		p := Process{Name: "nats-target-stream", Argv: append([]string{r.progs.NATS}, args...), Account: hp.Account}
		argv := p.commandLine(r.progs.Setpriv)
		cmd := h.Command(ctx, argv[0], argv[1:]...)
		cmd.Env = r.Plan.Env
		if hp.Account != nil {
			cmd.Env = append(slices.Clone(cmd.Env), hp.Account.Env()...)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("making the replicator's target stream %s on %s: %w: %s", r.Plan.Topology.Streams.Registration.Name, hp.Host.Name, err, strings.TrimSpace(string(out)))
		}
		r.log.Info(fmt.Sprintf("stream %s made on %s with one replica, for the replicator to copy the cluster's into", r.Plan.Topology.Streams.Registration.Name, hp.Host.Name))
	}
	return nil
}
