package walkthrough

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/reproducible-choria/deployment/internal/atomicfile"
	"github.com/reproducible-choria/deployment/internal/poll"
)

// Executor runs the scenario's actions on the hosts of a deployment.
type Executor interface {
	// Run runs command with `sh -c` on host and returns its interleaved
	// stdout and stderr and its exit status; err is for failures to run it
	// at all (and ctx ending).
	Run(ctx context.Context, host, command string) (Result, error)
	// Login runs `choria login` on host answering user and password; err
	// says the login failed, output is what it printed either way.
	Login(ctx context.Context, host, user, password string) (output string, err error)
}

// Verifier implements the scenario's verify kinds.
type Verifier interface {
	Verify(ctx context.Context, params map[string]string, output string) error
}

// Options control a run.
type Options struct {
	Executor Executor
	Verifier Verifier
	Vars     Vars
	// Servers are the short names and FQDNs of the servers, in order, for
	// steps run on each of them.
	Servers []Server
	// Continue runs every step even after a failure.
	Continue bool
	// Only, when set, runs just the steps whose names match; the others
	// are reported as skipped.
	Only *regexp.Regexp
	// Out gets one line per step and the details of failures.
	Out io.Writer
	// Now is the clock (tests); time.Now by default.
	Now func() time.Time
	// Sleep waits between attempts (tests); poll.Sleep by default.
	Sleep func(context.Context, time.Duration) error
}

// Server is one managed server.
type Server struct{ Name, FQDN string }

// Step outcomes in the report.
const (
	StatusPass = "pass"
	StatusFail = "fail"
	StatusSkip = "skip"
)

// Report is the JSON report of a run.
type Report struct {
	Started time.Time    `json:"started"`
	Seconds float64      `json:"seconds"`
	Passed  int          `json:"passed"`
	Failed  int          `json:"failed"`
	Skipped int          `json:"skipped"`
	Steps   []StepReport `json:"steps"`
}

// StepReport is one step (one per server for steps run on each).
type StepReport struct {
	Name     string   `json:"name"`
	Items    []int    `json:"items,omitempty"`
	Host     string   `json:"host"`
	Status   string   `json:"status"`
	Seconds  float64  `json:"seconds"`
	Attempts int      `json:"attempts"`
	Command  string   `json:"command,omitempty"`
	Captured Vars     `json:"captured,omitempty"`
	Expected []string `json:"expected,omitempty"`
	Got      string   `json:"got,omitempty"`
	Exit     *int     `json:"exit,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// OK tells whether no step failed.
func (r *Report) OK() bool { return r.Failed == 0 }

// Write saves the report as indented JSON.
func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the walkthrough report: %w", err)
	}
	// 0600 as well: the commands and outputs describe the lab's credentials
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing the walkthrough report: %w", err)
	}
	return nil
}

// Defaults for steps that do not say.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = 60 * time.Second
	// maxGot bounds the output kept in the report and printed on failure.
	maxGot = 6000
)

// Run runs the scenario's steps in order. It stops at the first failure
// unless o.Continue; the report lists every step, the ones not run as
// skipped. The error is for the run itself (ctx ending), never for a step.
func Run(ctx context.Context, s *Scenario, o Options) (*Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = poll.Sleep
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	vars := o.Vars.with()
	redact := o.Vars.redactor()
	rep := &Report{Started: o.Now()}
	stopped := false
	var runErr error
	for _, st := range s.Steps {
		for _, inst := range instances(st, o.Servers) {
			sr := StepReport{Name: inst.name, Items: st.Items, Host: inst.step.Host}
			switch {
			case stopped:
				sr.Status = StatusSkip
			case o.Only != nil && !o.Only.MatchString(inst.name):
				sr.Status = StatusSkip
			default:
				r := runner{o: o, vars: vars.with(inst.vars...)}
				sr = r.run(ctx, inst.name, inst.step)
				for k, v := range sr.Captured {
					vars[k] = v
				}
				// nothing shown or kept holds a secret's value
				sr = redact.step(sr)
				fmt.Fprintf(o.Out, "%-4s  %-42s %7.1fs\n", strings.ToUpper(sr.Status), sr.Name, sr.Seconds)
				if sr.Status == StatusFail {
					writeFailure(o.Out, sr)
					if ctx.Err() != nil {
						runErr = fmt.Errorf("walkthrough interrupted at %s: %w", sr.Name, ctx.Err())
						stopped = true
					} else if !o.Continue {
						stopped = true
					}
				}
			}
			switch sr.Status {
			case StatusPass:
				rep.Passed++
			case StatusFail:
				rep.Failed++
			default:
				rep.Skipped++
			}
			rep.Steps = append(rep.Steps, sr)
		}
	}
	rep.Seconds = seconds(o.Now().Sub(rep.Started))
	fmt.Fprintf(o.Out, "walkthrough: %d passed, %d failed, %d skipped in %.1fs\n", rep.Passed, rep.Failed, rep.Skipped, rep.Seconds)
	return rep, runErr
}

type instance struct {
	name string
	step Step
	vars []string
}

// instances expands a step run on each server into one per server.
func instances(st Step, servers []Server) []instance {
	if st.Each != EachServers {
		return []instance{{name: st.Name, step: st}}
	}
	var out []instance
	for _, s := range servers {
		vars := []string{"item", s.Name, "item.fqdn", s.FQDN}
		c := st
		c.Host = strings.ReplaceAll(strings.ReplaceAll(st.Host, "${item.fqdn}", s.FQDN), "${item}", s.Name)
		out = append(out, instance{name: st.Name + "/" + s.Name, step: c, vars: vars})
	}
	return out
}

type runner struct {
	o    Options
	vars Vars
}

// run polls one step until it passes or its deadline passes.
func (r runner) run(ctx context.Context, name string, st Step) (sr StepReport) {
	start := r.o.Now()
	sr = StepReport{Name: name, Items: st.Items, Status: StatusFail}
	defer func() { sr.Seconds = seconds(r.o.Now().Sub(start)) }()

	host, err := r.vars.Expand(st.Host)
	if err != nil {
		sr.Host, sr.Error = st.Host, fmt.Sprintf("host: %v", err)
		return sr
	}
	sr.Host = host
	deadline := start.Add(st.Deadline.Duration)
	interval := st.Interval.Duration
	if interval == 0 {
		interval = DefaultInterval
	}
	timeout := st.Timeout.Duration
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	for {
		sr.Attempts++
		a := r.attempt(ctx, st, host, timeout)
		sr.Command, sr.Expected, sr.Error = a.command, a.failed, a.err
		sr.Got, sr.Exit = truncate(a.result.Output), nil
		if st.Login == nil && a.ran {
			exit := a.result.Exit
			sr.Exit = &exit
		}
		if a.ok() {
			sr.Status, sr.Captured, sr.Got, sr.Exit = StatusPass, a.captured, "", nil
			return sr
		}
		if a.fatal || ctx.Err() != nil || !r.o.Now().Add(interval).Before(deadline) {
			return sr
		}
		if err := r.o.Sleep(ctx, interval); err != nil {
			sr.Error = err.Error()
			return sr
		}
	}
}

type attempt struct {
	command  string
	result   Result
	ran      bool
	failed   []string
	err      string
	fatal    bool // retrying cannot help: a scenario error
	captured Vars
}

func (a attempt) ok() bool { return a.ran && a.err == "" && len(a.failed) == 0 }

func (r runner) attempt(ctx context.Context, st Step, host string, timeout time.Duration) (a attempt) {
	fatal := func(err error) attempt {
		a.err, a.fatal = err.Error(), true
		return a
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if st.Login != nil {
		user, err := r.vars.Expand(st.Login.User)
		if err != nil {
			return fatal(fmt.Errorf("login user: %w", err))
		}
		pw, err := r.vars.Expand(st.Login.Password)
		if err != nil {
			return fatal(fmt.Errorf("login password: %w", err))
		}
		a.command = fmt.Sprintf("choria login as %s (expecting %s)", user, st.Login.Expect)
		out, lerr := r.o.Executor.Login(actx, host, user, pw)
		a.result, a.ran = Result{Output: out}, true
		switch {
		case st.Login.Expect == LoginSuccess && lerr != nil:
			a.failed = append(a.failed, fmt.Sprintf("login as %s succeeds, got: %v", user, lerr))
		case st.Login.Expect == LoginRefused && lerr == nil:
			a.failed = append(a.failed, fmt.Sprintf("login as %s is refused, but it succeeded", user))
		}
	} else {
		cmd, err := r.vars.Expand(st.Command)
		if err != nil {
			return fatal(fmt.Errorf("command: %w", err))
		}
		a.command = cmd
		res, err := r.o.Executor.Run(actx, host, cmd)
		if err != nil {
			if actx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w (the attempt's timeout is %s)", err, timeout)
			}
			a.result, a.err = res, err.Error()
			return a
		}
		a.result, a.ran = res, true
	}
	failed, err := st.Expect.Check(a.result, r.vars, st.Login != nil)
	if err != nil {
		return fatal(err)
	}
	a.failed = append(a.failed, failed...)
	captured, cfailed, err := Captures(st.Capture, a.result.Output, r.vars)
	if err != nil {
		return fatal(err)
	}
	a.failed = append(a.failed, cfailed...)
	if len(a.failed) > 0 {
		return a
	}
	if st.Verify != nil {
		params := map[string]string{}
		for k, v := range st.Verify {
			if params[k], err = r.vars.Expand(v); err != nil {
				return fatal(fmt.Errorf("verify %s: %w", k, err))
			}
		}
		if r.o.Verifier == nil {
			return fatal(fmt.Errorf("no verifier for %s", params["kind"]))
		}
		if err := r.o.Verifier.Verify(actx, params, a.result.Output); err != nil {
			a.failed = append(a.failed, fmt.Sprintf("%s verifies, got: %v", params["kind"], err))
			return a
		}
	}
	a.captured = captured
	return a
}

func writeFailure(w io.Writer, sr StepReport) {
	fmt.Fprintf(w, "      host:     %s (%d attempts)\n", sr.Host, sr.Attempts)
	if sr.Command != "" {
		fmt.Fprintf(w, "      command:  %s\n", sr.Command)
	}
	if sr.Error != "" {
		fmt.Fprintf(w, "      error:    %s\n", sr.Error)
	}
	for _, e := range slices.Sorted(slices.Values(sr.Expected)) {
		fmt.Fprintf(w, "      expected: %s\n", e)
	}
	if sr.Exit != nil {
		fmt.Fprintf(w, "      exit:     %d\n", *sr.Exit)
	}
	got := strings.TrimRight(sr.Got, "\n")
	if got == "" {
		got = "(nothing)"
	}
	fmt.Fprintf(w, "      got:\n%s\n", indent(got, "        "))
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func truncate(s string) string {
	if len(s) <= maxGot {
		return s
	}
	return fmt.Sprintf("[%d bytes cut]\n", len(s)-maxGot) + s[len(s)-maxGot:]
}

func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// IsSecret tells whether a scenario variable holds a secret (a login
// password, the provisioning token), whose value is never shown.
func IsSecret(name string) bool {
	return strings.HasPrefix(name, "password.") || name == "provisioning.token"
}

// redactor replaces the values of the secret variables.
type redactor struct{ r *strings.Replacer }

func (v Vars) redactor() redactor {
	var pairs []string
	for _, name := range slices.Sorted(maps.Keys(v)) {
		if IsSecret(name) && v[name] != "" {
			pairs = append(pairs, v[name], "${"+name+"}")
		}
	}
	return redactor{strings.NewReplacer(pairs...)}
}

func (r redactor) step(sr StepReport) StepReport {
	sr.Command = r.r.Replace(sr.Command)
	sr.Got = r.r.Replace(sr.Got)
	sr.Error = r.r.Replace(sr.Error)
	sr.Expected = slices.Clone(sr.Expected)
	for i, e := range sr.Expected {
		sr.Expected[i] = r.r.Replace(e)
	}
	if sr.Captured != nil {
		c := make(map[string]string, len(sr.Captured))
		for k, v := range sr.Captured {
			c[k] = r.r.Replace(v)
		}
		sr.Captured = c
	}
	return sr
}
