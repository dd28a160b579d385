package walkthrough

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeLab answers commands from a script and keeps a fake clock that only
// moves when the runner sleeps or a command takes time.
type fakeLab struct {
	mu    sync.Mutex
	now   time.Time
	calls []string
	// answer returns the result of the n-th (from 1) run of command on host.
	answer func(host, command string, n int) (Result, error)
	counts map[string]int
	// passwords are the accepted logins.
	passwords map[string]string
	// cost is how long each command takes on the clock.
	cost time.Duration
}

func newFakeLab() *fakeLab {
	return &fakeLab{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), counts: map[string]int{}, passwords: map[string]string{}, cost: 100 * time.Millisecond}
}

func (f *fakeLab) Run(_ context.Context, host, command string) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, host+": "+command)
	f.counts[host+"\x00"+command]++
	f.now = f.now.Add(f.cost)
	return f.answer(host, command, f.counts[host+"\x00"+command])
}

func (f *fakeLab) Login(_ context.Context, host, user, password string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, host+": login "+user)
	if pw, ok := f.passwords[user]; ok && pw == password {
		return "Token saved to /root/.config/choria/client.jwt", nil
	}
	return "FATA[0000] Could not run Choria: Login failed", errors.New("choria login as " + user + " failed: exit status 1")
}

func (f *fakeLab) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeLab) Sleep(_ context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeLab) options(out *strings.Builder) Options {
	return Options{
		Executor: f, Now: f.Now, Sleep: f.Sleep, Out: out,
		Vars:    Vars{"servers.count": "2", "password.choria": "secret"},
		Servers: []Server{{"server1", "server1.choria.local"}, {"server2", "server2.choria.local"}},
	}
}

func mustParse(t *testing.T, js string) *Scenario {
	t.Helper()
	s, err := Parse([]byte(js))
	require.NoError(t, err)
	return s
}

func TestRunPollsUntilDeadline(t *testing.T) {
	lab := newFakeLab()
	lab.answer = func(host, cmd string, n int) (Result, error) {
		if n < 4 {
			return Result{Output: fmt.Sprintf("%d replies", n%2)}, nil
		}
		return Result{Output: "2 replies"}, nil
	}
	s := mustParse(t, `{"steps":[{"name":"ping","items":[2],"host":"client","command":"choria ping","deadline":"30s","interval":"5s","expect":{"contains":["${servers.count} replies"]}}]}`)
	var out strings.Builder
	rep, err := Run(context.Background(), s, lab.options(&out))
	require.NoError(t, err)
	require.True(t, rep.OK(), out.String())
	require.Len(t, rep.Steps, 1)
	assert.Equal(t, 4, rep.Steps[0].Attempts)
	assert.InDelta(t, 15.4, rep.Steps[0].Seconds, 0.001, "three waits of 5s and four commands of 0.1s")
	assert.Regexp(t, `^PASS  ping\s+15\.4s\n`, out.String())
}

func TestRunGivesUpAtDeadlineAndExplains(t *testing.T) {
	lab := newFakeLab()
	lab.answer = func(host, cmd string, n int) (Result, error) {
		return Result{Output: "1 replies\n", Exit: 1}, nil
	}
	s := mustParse(t, `{"steps":[
		{"name":"ping","items":[2],"host":"client","command":"choria ping","deadline":"10s","expect":{"contains":["${servers.count} replies"]}},
		{"name":"after","items":[2],"host":"client","command":"true"}]}`)
	var out strings.Builder
	rep, err := Run(context.Background(), s, lab.options(&out))
	require.NoError(t, err)
	assert.False(t, rep.OK())
	assert.Equal(t, 1, rep.Failed)
	assert.Equal(t, 1, rep.Skipped, "the run stops at the first failure")
	assert.Equal(t, StatusSkip, rep.Steps[1].Status)
	assert.Equal(t, 5, rep.Steps[0].Attempts, "attempts at 0, 2.1, 4.2, 6.3 and 8.4s; the next would start after the deadline")
	assert.Equal(t, []string{"exit status 0, got 1", `output contains "2 replies"`}, rep.Steps[0].Expected)
	assert.Equal(t, "choria ping", rep.Steps[0].Command)
	assert.Equal(t, "1 replies\n", rep.Steps[0].Got)
	require.NotNil(t, rep.Steps[0].Exit)
	assert.Equal(t, 1, *rep.Steps[0].Exit)
	for _, want := range []string{"FAIL  ping", "command:  choria ping", `expected: output contains "2 replies"`, "expected: exit status 0, got 1", "got:\n        1 replies"} {
		assert.Contains(t, out.String(), want)
	}
	assert.NotContains(t, strings.Join(lab.calls, "\n"), "true", "the step after a failure is not run")
}

func TestRunContinueAndOnly(t *testing.T) {
	lab := newFakeLab()
	lab.answer = func(host, cmd string, n int) (Result, error) {
		if cmd == "false" {
			return Result{Exit: 1}, nil
		}
		return Result{Output: "ok"}, nil
	}
	js := `{"steps":[
		{"name":"one","items":[1],"host":"client","command":"false"},
		{"name":"two","items":[1],"host":"client","command":"echo two"},
		{"name":"three","items":[1],"host":"client","command":"echo three"}]}`
	var out strings.Builder
	o := lab.options(&out)
	o.Continue = true
	rep, err := Run(context.Background(), mustParse(t, js), o)
	require.NoError(t, err)
	assert.Equal(t, []string{StatusFail, StatusPass, StatusPass}, statuses(rep))

	lab = newFakeLab()
	lab.answer = func(host, cmd string, n int) (Result, error) { return Result{Output: "ok"}, nil }
	o = lab.options(&out)
	o.Only = regexp.MustCompile(`^t`)
	rep, err = Run(context.Background(), mustParse(t, js), o)
	require.NoError(t, err)
	assert.Equal(t, []string{StatusSkip, StatusPass, StatusPass}, statuses(rep))
	assert.Equal(t, []string{"client: echo two", "client: echo three"}, lab.calls)
}

func statuses(r *Report) []string {
	var s []string
	for _, st := range r.Steps {
		s = append(s, st.Status)
	}
	return s
}

func TestRunCapturesFlowIntoLaterStepsAndEachServer(t *testing.T) {
	lab := newFakeLab()
	round := 0
	lab.answer = func(host, cmd string, n int) (Result, error) {
		switch {
		case strings.HasPrefix(cmd, "sha256sum"):
			return Result{Output: fmt.Sprintf("%s%d  /etc/choria/server.seed\n", strings.Repeat("a", 3), round)}, nil
		case cmd == "reprovision":
			round++
			return Result{Output: "done"}, nil
		case strings.HasPrefix(cmd, "choria facts"):
			return Result{Output: "  7959 found 2 times\n"}, nil
		}
		return Result{Output: cmd}, nil
	}
	s := mustParse(t, `{"steps":[
		{"name":"facts","items":[2],"host":"client","command":"choria facts memory.size","capture":{"mem":"(\\d+) found ${servers.count} times"}},
		{"name":"discover","items":[2],"host":"client","command":"choria req rpcutil ping -F memory.size=${mem}","expect":{"contains":["memory.size=7959"]}},
		{"name":"before","items":[11],"host":"${item}","each":"servers","command":"sha256sum seed","capture":{"seed_${item}":"^(\\w+)\\s+\\S*server\\.seed$"}},
		{"name":"reprovision","items":[11],"host":"client","command":"reprovision"},
		{"name":"after","items":[11],"host":"${item}","each":"servers","command":"sha256sum seed # on ${item.fqdn}","expect":{"not_contains":["${seed_${item}}"]}}]}`)
	var out strings.Builder
	rep, err := Run(context.Background(), s, lab.options(&out))
	require.NoError(t, err)
	require.True(t, rep.OK(), out.String())
	var names []string
	for _, st := range rep.Steps {
		names = append(names, st.Name+"@"+st.Host)
	}
	assert.Equal(t, []string{"facts@client", "discover@client", "before/server1@server1", "before/server2@server2", "reprovision@client", "after/server1@server1", "after/server2@server2"}, names)
	assert.Equal(t, Vars{"seed_server1": "aaa0"}, rep.Steps[2].Captured)
	assert.Contains(t, lab.calls, "server2: sha256sum seed # on server2.choria.local")
	assert.Contains(t, lab.calls, "client: choria req rpcutil ping -F memory.size=7959")
}

func TestRunLogin(t *testing.T) {
	lab := newFakeLab()
	lab.passwords["choria"] = "secret"
	s := mustParse(t, `{"steps":[
		{"name":"wrong","items":[1],"host":"client","login":{"user":"choria","password":"not-${password.choria}","expect":"refused"},"expect":{"contains":["Login failed"]}},
		{"name":"right","items":[1],"host":"client","login":{"user":"choria","password":"${password.choria}","expect":"success"}},
		{"name":"refused-but-worked","items":[1],"host":"client","login":{"user":"choria","password":"${password.choria}","expect":"refused"}}]}`)
	var out strings.Builder
	o := lab.options(&out)
	o.Continue = true
	rep, err := Run(context.Background(), s, o)
	require.NoError(t, err)
	assert.Equal(t, []string{StatusPass, StatusPass, StatusFail}, statuses(rep))
	assert.Equal(t, []string{"login as choria is refused, but it succeeded"}, rep.Steps[2].Expected)
	assert.NotContains(t, out.String(), "secret", "passwords are not printed")
}

func TestRunUnknownVariableFailsAtOnce(t *testing.T) {
	lab := newFakeLab()
	lab.answer = func(host, cmd string, n int) (Result, error) { return Result{}, nil }
	s := mustParse(t, `{"steps":[{"name":"a","items":[1],"host":"client","command":"echo ${nope}","deadline":"60s"}]}`)
	var out strings.Builder
	rep, err := Run(context.Background(), s, lab.options(&out))
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Steps[0].Attempts, "retrying cannot define a variable")
	assert.Contains(t, rep.Steps[0].Error, "unknown variable nope")
	assert.Empty(t, lab.calls)
}

type fakeVerifier struct{ err error }

func (v fakeVerifier) Verify(_ context.Context, params map[string]string, output string) error {
	if params["package"] != "requestsclient" || output != "dGFy" {
		return fmt.Errorf("called with %v %q", params, output)
	}
	return v.err
}

func TestRunVerify(t *testing.T) {
	lab := newFakeLab()
	lab.answer = func(host, cmd string, n int) (Result, error) { return Result{Output: "dGFy"}, nil }
	js := `{"steps":[{"name":"gen","items":[10],"host":"client","command":"gen","verify":{"kind":"go-package","require":"m v1","package":"${pkg}"}}]}`
	var out strings.Builder
	o := lab.options(&out)
	o.Vars["pkg"] = "requestsclient"
	o.Verifier = fakeVerifier{}
	rep, err := Run(context.Background(), mustParse(t, js), o)
	require.NoError(t, err)
	assert.True(t, rep.OK(), out.String())

	o.Verifier = fakeVerifier{err: errors.New("does not compile")}
	rep, err = Run(context.Background(), mustParse(t, js), o)
	require.NoError(t, err)
	assert.False(t, rep.OK())
	assert.Equal(t, []string{"go-package verifies, got: does not compile"}, rep.Steps[0].Expected)
}

func TestRunCommandErrorAndInterruption(t *testing.T) {
	lab := newFakeLab()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lab.answer = func(host, cmd string, n int) (Result, error) {
		cancel()
		return Result{Output: "partial"}, errors.New("command on client cut short: context canceled")
	}
	s := mustParse(t, `{"steps":[{"name":"a","items":[1],"host":"client","command":"sleep 100","deadline":"60s"},{"name":"b","items":[1],"host":"client","command":"true"}]}`)
	var out strings.Builder
	o := lab.options(&out)
	o.Continue = true
	rep, err := Run(ctx, s, o)
	require.Error(t, err, "an interrupted run is an error, even with --continue")
	assert.Equal(t, []string{StatusFail, StatusSkip}, statuses(rep))
	assert.Equal(t, "partial", rep.Steps[0].Got)
	assert.Contains(t, rep.Steps[0].Error, "cut short")
}

func TestReportWrite(t *testing.T) {
	lab := newFakeLab()
	lab.answer = func(host, cmd string, n int) (Result, error) { return Result{Output: "x"}, nil }
	rep, err := Run(context.Background(), mustParse(t, `{"steps":[{"name":"a","items":[1],"host":"client","command":"true"}]}`), lab.options(&strings.Builder{}))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "report.json")
	require.NoError(t, rep.Write(path))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var back Report
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, 1, back.Passed)
	assert.Equal(t, "a", back.Steps[0].Name)
	assert.Equal(t, StatusPass, back.Steps[0].Status)
	assert.InDelta(t, 0.1, back.Steps[0].Seconds, 0.001)
}

// TestSecretsNeverShown: a failing step whose command and output hold a
// password and the provisioning token prints and reports neither value,
// and the report is readable by its owner only.
func TestSecretsNeverShown(t *testing.T) {
	f := newFakeLab()
	token := "eyJhbGciOiJFZERTQSJ9.provisioning-token-value"
	f.answer = func(_, command string, _ int) (Result, error) {
		return Result{Output: "ran: " + command + "\n", Exit: 1}, nil
	}
	s := mustParse(t, `{"steps": [
		{"name": "leaky", "host": "client", "command": "echo ${password.choria} ${provisioning.token}", "expect": {"contains": ["${password.choria}"], "regex": ["^${provisioning.token}$"]}, "capture": {"x": "(${provisioning.token}) nope"}}
	]}`)
	var out strings.Builder
	o := f.options(&out)
	o.Vars["password.choria"] = "s3cret-pw"
	o.Vars["provisioning.token"] = token
	rep, err := Run(context.Background(), s, o)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Failed)
	report := filepath.Join(t.TempDir(), "report.json")
	require.NoError(t, rep.Write(report))
	b, err := os.ReadFile(report)
	require.NoError(t, err)
	for _, shown := range []string{out.String(), string(b)} {
		assert.NotContains(t, shown, "s3cret-pw")
		assert.NotContains(t, shown, token)
	}
	assert.Contains(t, out.String(), "echo ${password.choria} ${provisioning.token}", "the command is shown with its variables")
	st, err := os.Stat(report)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}
