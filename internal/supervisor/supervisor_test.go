package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/clilog"
	"github.com/reproducible-choria/deployment/internal/netlab/netlabtest"
)

func TestMain(m *testing.M) { netlabtest.Main(m) }

// machine runs programs on this machine itself: the supervisor's own
// logic needs no namespace.
type machine struct{}

func (machine) Name() string { return "machine" }
func (machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

func shell(t *testing.T, name, script string) Program {
	return Program{Name: name, Argv: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		Log: filepath.Join(t.TempDir(), "logs", name+".log")}
}

func readLog(p Program) string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// A process that dies is restarted with back-off and its death logged;
// Stop ends it and nothing restarts after.
func TestRestartsWithBackoffAndStops(t *testing.T) {
	var logs bytes.Buffer
	s := New(clilog.New(&logs, "test", slog.LevelInfo))
	p := shell(t, "flaky", "echo run; sleep 0.2; exit 3")
	sp, err := s.Start(machine{}, p)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sp.Restarts() >= 2 }, 10*time.Second, 20*time.Millisecond)
	s.Stop()
	snap := s.Snapshots()
	require.Len(t, snap, 1)
	assert.Equal(t, Snapshot{Host: "machine", Name: "flaky", PID: snap[0].PID, Restarts: snap[0].Restarts, LastExit: "exit status 3"}, snap[0])
	runs := func() int { return strings.Count(readLog(p), "run\n") }
	require.Eventually(t, func() bool { return runs() >= 2 }, 2*time.Second, 20*time.Millisecond)
	before := runs()
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, before, runs(), "nothing restarts after Stop")
	assert.Contains(t, logs.String(), "test: warning: flaky on machine died (exit status 3); restarting in 250ms\n")
	assert.Contains(t, logs.String(), "restarting in 500ms", "the second death waits twice as long")
}

// Stop gives a program that ignores SIGTERM its grace period, then kills it.
func TestStopKillsWhatIgnoresTerm(t *testing.T) {
	s := New(slog.New(slog.DiscardHandler))
	p := shell(t, "stubborn", `trap '' TERM; echo ready; while :; do sleep 0.1; done`)
	sp, err := s.Start(machine{}, p)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(readLog(p), "ready") }, 5*time.Second, 20*time.Millisecond)
	pid := s.Snapshots()[0].PID
	start := time.Now()
	s.Stop()
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, stopGrace, "the grace period is given")
	assert.Less(t, took, stopGrace+3*time.Second)
	assert.Error(t, syscall.Kill(pid, 0), "the process is gone")
	assert.Zero(t, sp.Restarts())
}

// Kill with hold keeps a killed process down, as a stopped unit, until
// Resume starts it again at once; without hold it is restarted as after
// any death.
func TestKillHoldsUntilResumed(t *testing.T) {
	var logs bytes.Buffer
	s := New(clilog.New(&logs, "test", slog.LevelInfo))
	defer s.Stop()
	p := shell(t, "service", "echo run; exec sleep 600")
	_, err := s.Start(machine{}, p)
	require.NoError(t, err)
	sp, err := s.Find("machine", "service")
	require.NoError(t, err)
	_, err = s.Find("machine", "other")
	assert.ErrorContains(t, err, "no process other on host machine")
	runs := func() int { return strings.Count(readLog(p), "run\n") }
	require.Eventually(t, func() bool { return runs() == 1 && sp.Running() }, 5*time.Second, 20*time.Millisecond)

	sp.Resume() // a Resume before the hold does not end it
	sp.Kill(syscall.SIGKILL, true)
	require.Eventually(t, func() bool { return !sp.Running() }, 5*time.Second, 20*time.Millisecond)
	time.Sleep(time.Second) // four times the shortest back-off
	assert.Equal(t, 1, runs(), "a held process stays down")
	assert.Equal(t, "signal: killed", s.Snapshots()[0].LastExit)
	assert.Contains(t, logs.String(), "service on machine died (signal: killed); held down until resumed")

	resumed := time.Now()
	sp.Resume()
	require.Eventually(t, func() bool { return runs() == 2 && sp.Running() }, 5*time.Second, 10*time.Millisecond)
	assert.Less(t, time.Since(resumed), time.Second, "started at once")
	assert.Equal(t, 1, sp.Restarts())

	sp.Kill(syscall.SIGKILL, false)
	require.Eventually(t, func() bool { return runs() == 3 }, 5*time.Second, 20*time.Millisecond, "restarted as after any death")
}

// A program that cannot start is an error naming it, and nothing is supervised.
func TestStartFailureNamesTheProgram(t *testing.T) {
	s := New(slog.New(slog.DiscardHandler))
	defer s.Stop()
	p := Program{Name: "ghost", Argv: []string{"/nonexistent/ghost"}, Log: filepath.Join(t.TempDir(), "ghost.log")}
	_, err := s.Start(machine{}, p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "starting ghost on machine")
	assert.Empty(t, s.Snapshots())
}

// Changed is signalled when a process starts, Stopped closed by Stop.
func TestChangedAndStopped(t *testing.T) {
	s := New(slog.New(slog.DiscardHandler))
	_, err := s.Start(machine{}, shell(t, "sleeper", "exec sleep 600"))
	require.NoError(t, err)
	select {
	case <-s.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled for a start")
	}
	select {
	case <-s.Stopped():
		t.Fatal("stopped before Stop")
	default:
	}
	s.Stop()
	s.Stop() // twice is safe
	select {
	case <-s.Stopped():
	default:
		t.Fatal("Stopped not closed by Stop")
	}
}

// A supervised process gets what systemd gives a service logging to the
// journal, a write-only stream socket, so a program that opens /dev/stdout
// fails here as it would under systemd.
func TestOutputIsAWriteOnlySocket(t *testing.T) {
	s := New(slog.New(slog.DiscardHandler))
	p := shell(t, "probe", `echo out; echo err >&2
readlink /proc/self/fd/1
if echo x > /dev/stdout; then echo opened-dev-stdout; else echo refused-dev-stdout; fi
if read -t 1 line <&1; then echo readable; else echo not-readable; fi
exec sleep 600`)
	_, err := s.Start(machine{}, p)
	require.NoError(t, err)
	defer s.Stop()
	var log string
	require.Eventually(t, func() bool {
		log = readLog(p)
		return strings.Contains(log, "readable")
	}, 10*time.Second, 20*time.Millisecond, "log so far: %q", log)
	assert.Contains(t, log, "out\n")
	assert.Contains(t, log, "err\n")
	assert.Contains(t, log, "socket:[")
	assert.Contains(t, log, "refused-dev-stdout")
	assert.Contains(t, log, "not-readable")
}

// In a lab host the pid reported is the program's, behind nsenter, and
// Stop signals the whole group: the program gets SIGTERM and what it
// started ends with it.
func TestLabHostProgramAndItsChildren(t *testing.T) {
	h := netlabtest.OneHost(t)
	s := New(slog.New(slog.DiscardHandler))
	// the trap is set before the child starts, so a TERM after "child" is
	// seen by the trap
	p := shell(t, "parent", `trap 'echo term; exit 0' TERM; sleep 600 & echo child $!; wait`)
	_, err := s.Start(h, p)
	require.NoError(t, err)
	// the child's pid as this machine sees it (the host has its own PID
	// namespace, where $! is another number): the child of the program
	var program, child int
	var comm []byte
	require.Eventually(t, func() bool {
		if !strings.Contains(readLog(p), "child ") {
			return false
		}
		program = s.Snapshots()[0].PID
		comm, _ = os.ReadFile(fmt.Sprintf("/proc/%d/comm", program))
		if strings.TrimSpace(string(comm)) != "sh" {
			return false // still nsenter's pid
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", program, program))
		if _, err := fmt.Sscanf(string(b), "%d", &child); err != nil {
			return false
		}
		// the shell forks, then the child execs sleep: until then it is sh
		comm, _ = os.ReadFile(fmt.Sprintf("/proc/%d/comm", child))
		return strings.TrimSpace(string(comm)) == "sleep"
	}, 5*time.Second, 20*time.Millisecond, "the program's child is sleep")
	s.Stop()
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		return err != nil || strings.Contains(string(b), ") Z ")
	}, 5*time.Second, 20*time.Millisecond, "the child of a supervised process ends with it")
	assert.Contains(t, readLog(p), "term", "the program itself got SIGTERM")
}
