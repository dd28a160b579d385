package walkthrough

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reproducible-choria/deployment/internal/bootstrap"
	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/topology"
)

// LabExecutor runs steps on the hosts of a running namespace lab.
type LabExecutor struct{ State *lab.State }

// Run enters the host's namespaces with nsenter and runs sh -c command in
// its own process group, killed whole when ctx ends.
func (e LabExecutor) Run(ctx context.Context, host, command string) (Result, error) {
	h, err := e.State.Host(host)
	if err != nil {
		return Result{}, err
	}
	cmd := netlab.EnterCommandContext(ctx, h.AnchorPID, []string{"/bin/sh", "-c", command})
	cmd.Env = append(append([]string(nil), e.State.Env...), "TERM=dumb")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// background children of the command may keep the output open
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("running a command on %s: %w", host, err)
	}
	werr := cmd.Wait()
	res := Result{Output: out.String()}
	if ctx.Err() != nil {
		return res, fmt.Errorf("command on %s cut short: %w", host, ctx.Err())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(werr, &ee):
		res.Exit = ee.ExitCode()
	case werr != nil && !errors.Is(werr, exec.ErrWaitDelay):
		return res, fmt.Errorf("running a command on %s: %w", host, werr)
	}
	return res, nil
}

// Login runs a real `choria login` on a terminal.
func (e LabExecutor) Login(ctx context.Context, host, user, password string) (string, error) {
	return lab.Login(ctx, e.State, host, user, password)
}

// LabServers lists the lab's servers in their topology order.
func LabServers(st *lab.State) []Server {
	var out []Server
	for _, h := range st.Hosts {
		if h.Role == topology.RoleServer {
			out = append(out, Server{Name: h.Name, FQDN: h.FQDN})
		}
	}
	slices.SortStableFunc(out, func(a, b Server) int { return cmp.Compare(serverIndex(a.Name), serverIndex(b.Name)) })
	return out
}

// serverIndex is the number ending a server's name, so server10 sorts after server9.
func serverIndex(name string) int {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	n, _ := strconv.Atoi(name[i:])
	return n
}

// LabVars are the scenario's variables for a running lab: its hosts from
// the state, secrets from the lab's credentials, paths and streams from
// the topology.
func LabVars(t *topology.Topology, l lab.Layout, st *lab.State) (Vars, error) {
	v := TopologyVars(t)
	servers := LabServers(st)
	if len(servers) == 0 {
		return nil, errors.New("the lab has no servers")
	}
	var names, fqdns []string
	for _, s := range servers {
		names = append(names, s.Name)
		fqdns = append(fqdns, s.FQDN)
	}
	v["servers.count"] = strconv.Itoa(len(servers))
	v["servers.names"] = strings.Join(names, " ")
	v["servers.fqdns"] = strings.Join(fqdns, " ")
	v["servers.first"] = servers[0].Name
	v["servers.first.fqdn"] = servers[0].FQDN
	for _, h := range st.Hosts {
		v["fqdn."+h.Name] = h.FQDN
	}
	for _, u := range t.UserNames() {
		pw, err := l.Credentials().UserPassword(u)
		if err != nil {
			return nil, err
		}
		v["password."+u] = strings.TrimSpace(pw)
	}
	read := func(file string) (string, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the lab's credentials: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var err error
	if v["provisioning.token"], err = read(l.Credentials().ProvisioningToken()); err != nil {
		return nil, err
	}
	if v["issuer.public_key"], err = read(l.Credentials().IssuerPublic()); err != nil {
		return nil, err
	}
	return v, nil
}

// TopologyVars are the variables that come from the topology alone.
func TopologyVars(t *topology.Topology) Vars {
	v := Vars{
		"domain":                       t.Domain,
		"path.aaa_audit_log":           bootstrap.AAAAuditLog(t),
		"path.server_status_file":      t.ServerPaths.StatusFile,
		"stream.registration":          t.Streams.Registration.Name,
		"stream.registration.subjects": strings.Join(t.Streams.Registration.Subjects, " "),
		"stream.submission":            t.Streams.Submission.Name,
		"stream.submission.subjects":   strings.Join(t.Streams.Submission.Subjects, " "),
		"stream.plugins_bucket":        t.Streams.PluginsBucket,
		"stream.plugins_key":           t.Streams.PluginsKey,
		"stream.replicator_name":       t.Streams.ReplicatorName,
		"stream.monitor_subject":       t.Streams.MonitorSubject,
		"stream.replicas":              strconv.Itoa(t.StreamReplicas()),
	}
	for name, r := range t.Roles {
		v["role."+name+".config_dir"] = r.ConfigDir
		v["role."+name+".state_dir"] = r.StateDir
	}
	for _, h := range t.AllHosts() {
		v["fqdn."+h.Name] = t.FQDN(h.Name)
	}
	return v
}

// LabOptions control `choria-lab walkthrough`.
type LabOptions struct {
	Layout lab.Layout
	// Report, when set, is where the JSON report is written.
	Report   string
	Continue bool
	// Only is a regular expression of step names to run.
	Only string
	Out  io.Writer
}

// ErrStepsFailed says the walkthrough ran and some step failed.
var ErrStepsFailed = errors.New("walkthrough failed")

// RunLab runs the embedded scenario against the lab running in o.Layout.
// It returns ErrStepsFailed (wrapped) when a step failed.
func RunLab(ctx context.Context, o LabOptions) (*Report, error) {
	st, err := lab.ReadState(o.Layout)
	if err != nil {
		return nil, err
	}
	if !st.Ready {
		return nil, fmt.Errorf("the lab in %s is still coming up", o.Layout.Dir)
	}
	scen, err := Default()
	if err != nil {
		return nil, err
	}
	// the topology the lab was built from, for its paths and brokers
	topo, err := st.Topology()
	if err != nil {
		return nil, err
	}
	vars, err := LabVars(topo, o.Layout, st)
	if err != nil {
		return nil, err
	}
	opts := Options{
		Executor: LabExecutor{State: st},
		Verifier: CodeVerifier{IssuerPublicKey: vars["issuer.public_key"]},
		Vars:     vars,
		Servers:  LabServers(st),
		Continue: o.Continue,
		Out:      o.Out,
	}
	if o.Only != "" {
		if opts.Only, err = regexp.Compile(o.Only); err != nil {
			return nil, fmt.Errorf("--only: %w", err)
		}
	}
	rep, runErr := Run(ctx, scen, opts)
	if o.Report != "" && rep != nil {
		if err := rep.Write(o.Report); err != nil {
			return rep, errors.Join(runErr, err)
		}
	}
	if runErr != nil {
		return rep, runErr
	}
	if !rep.OK() {
		return rep, fmt.Errorf("%w: %d of %d steps failed", ErrStepsFailed, rep.Failed, len(rep.Steps))
	}
	return rep, nil
}
