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
	"github.com/reproducible-choria/deployment/topology"
)

// startRole starts every process of the role's hosts and waits until they serve.
func (r *Running) startRole(ctx context.Context, role string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(r.Plan.Hosts))
	for _, hp := range r.Plan.Hosts {
		if hp.Host.Role != role {
			continue
		}
		h, ok := r.net.Host(hp.Host.Name)
		if !ok {
			return fmt.Errorf("host %s is missing from the network", hp.Host.Name)
		}
		for _, p := range hp.Processes {
			sp, err := r.supervisor.Start(h, p.program(r.Plan.Layout, hp.Host.Name, r.Plan.Env, r.progs.Setpriv))
			if err != nil {
				return err
			}
			if p.Ready == "" {
				continue
			}
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

// waitProvisioned waits until every server holds the configuration the
// provisioner gave it.
func (r *Running) waitProvisioned(ctx context.Context) error {
	return r.waitServers(ctx, "provisioned", func(h HostState) bool { return r.Plan.Layout.Provisioned(h.Name) },
		"see the provisioner's log "+r.Plan.Layout.ProcessLog(r.Plan.Topology.MustHost(topology.RoleProvisioner).Name, "provisioner"))
}

// waitAnswering waits until every server runs with its provisioned
// identity, connected to the broker, as its status file says.
func (r *Running) waitAnswering(ctx context.Context) error {
	return r.waitServers(ctx, "connected", func(h HostState) bool {
		s, err := readServerStatus(h.StatusFile)
		return err == nil && s.answering(h.FQDN)
	}, "see `choria-lab status` and the servers' logs")
}

// waitServers reports progress until done holds for every server.
func (r *Running) waitServers(ctx context.Context, state string, done func(HostState) bool, hint string) error {
	var servers []HostState
	for _, h := range r.State().Hosts {
		if h.Role == topology.RoleServer {
			servers = append(servers, h)
		}
	}
	last := -1
	var waiting []string
	err := poll.Until(ctx, 100*time.Millisecond, func() (bool, error) {
		waiting = waiting[:0]
		for _, h := range servers {
			if !done(h) {
				waiting = append(waiting, h.Name)
			}
		}
		if n := len(servers) - len(waiting); n != last {
			r.log.Info(fmt.Sprintf("servers %s %d of %d", state, n, len(servers)))
			last = n
		}
		return len(waiting) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%d of %d servers were not %s (%s): %s: %w", len(waiting), len(servers), state, strings.Join(waiting, ", "), hint, err)
	}
	return nil
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
		h, ok := r.net.Host(hp.Host.Name)
		if !ok {
			return fmt.Errorf("host %s is missing from the network", hp.Host.Name)
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
