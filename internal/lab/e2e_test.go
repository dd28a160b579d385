package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/clilog"
	"github.com/reproducible-choria/deployment/internal/lab/labtest"
	"github.com/reproducible-choria/deployment/internal/netlab/netlabtest"
	"github.com/reproducible-choria/deployment/internal/supervisor"
)

func TestMain(m *testing.M) { netlabtest.Main(m) }

func labPIDs(st *State) []int {
	var pids []int
	for _, h := range st.Hosts {
		pids = append(pids, h.AnchorPID)
		for _, p := range h.Processes {
			if p.PID > 0 {
				pids = append(pids, p.PID)
			}
		}
	}
	return pids
}

func assertAllGone(t *testing.T, pids []int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, pid := range pids {
		for supervisor.Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		assert.False(t, supervisor.Alive(pid), "process %d of the lab survived", pid)
	}
}

func TestLabEndToEnd(t *testing.T) {
	dirs := labtest.ProgramDirs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress strings.Builder
	// a window smaller than the fleet: the servers start in turn
	r, err := Up(ctx, Options{Dir: t.TempDir(), BinDirs: dirs, Servers: 10, StartWindow: 4, Log: clilog.New(&progress, "choria-lab", slog.LevelInfo)})
	require.NoError(t, err, progress.String())
	downed := false
	defer func() {
		if !downed {
			r.Down()
		}
	}()
	assert.Contains(t, progress.String(), "servers: 4 started, 0 provisioned, 0 answering of 10", "no more than the window start at once")
	assert.NotRegexp(t, `servers: ([5-9]|10) started, \d+ provisioned, 0 answering`, progress.String(), "the fifth server waits for one to answer")
	assert.Contains(t, progress.String(), "servers: 10 started, 10 provisioned, 10 answering of 10")
	for _, s := range r.servers {
		assert.Positive(t, s.answered, "%s: when it answered", s.host.Name)
		assert.Positive(t, s.cpu, "%s: its CPU until it answered", s.host.Name)
		assert.Less(t, s.cpu, 10.0, "%s: CPU seconds, not ticks", s.host.Name)
	}
	layout := r.Plan.Layout

	st, err := ReadState(layout)
	require.NoError(t, err)
	assert.True(t, st.Ready)
	assert.Len(t, st.Hosts, 17)

	t.Run("every server is provisioned by the real provisioner", func(t *testing.T) {
		for i := 1; i <= 10; i++ {
			name := r.Plan.Topology.ServerName(i)
			conf, err := os.ReadFile(filepath.Join(layout.HostEtcChoria(name), "server.conf"))
			require.NoError(t, err)
			assert.Contains(t, string(conf), "from provisioner_signer", name)
			assert.Contains(t, string(conf), "identity="+name+".choria.local", name)
		}
	})

	t.Run("the client logs in and every server answers ping", func(t *testing.T) {
		pw, err := layout.Credentials().UserPassword("choria")
		require.NoError(t, err)
		_, err = Login(ctx, st, "client", "choria", pw)
		require.NoError(t, err)
		require.NoError(t, waitPing(ctx, st, 10, time.Minute))
	})

	t.Run("isolation as in the reference", func(t *testing.T) {
		client, _ := r.net.Host("client")
		c, err := client.DialContext(ctx, "tcp", "broker.choria.local:4222")
		require.NoError(t, err, "the client reaches the broker")
		c.Close()
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		defer dcancel()
		_, err = client.DialContext(dctx, "tcp", "198.18.1.1:4222")
		assert.Error(t, err, "the client must not reach a server")
		nats, _ := r.net.Host("nats")
		_, err = nats.DialContext(dctx, "tcp", "198.18.4.10:4222")
		assert.Error(t, err, "the NATS host must not reach the broker")
	})

	t.Run("services run as their systemd units run them", func(t *testing.T) {
		accounts := map[string]*Account{}
		for _, hp := range r.Plan.Hosts {
			accounts[hp.Host.Name] = hp.Account
		}
		seen := 0
		for _, s := range r.supervisor.Snapshots() {
			require.NotZero(t, s.PID, "%s on %s", s.Name, s.Host)
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.PID))
			require.NoError(t, err)
			uid := "0"
			if a := accounts[s.Host]; a != nil {
				uid = strconv.Itoa(a.UID)
				seen++
				assert.Regexp(t, `(?m)^NoNewPrivs:\s+1$`, string(status), "%s on %s", s.Name, s.Host)
			}
			assert.Regexp(t, `(?m)^Uid:\s+`+uid+`\s+`+uid+`\s`, string(status), "%s on %s", s.Name, s.Host)
			for _, fd := range []string{"1", "2"} {
				target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.PID, fd))
				require.NoError(t, err)
				assert.True(t, strings.HasPrefix(target, "socket:["), "%s on %s: fd %s is %s, not a socket as under systemd", s.Name, s.Host, fd, target)
			}
		}
		assert.Equal(t, 6, seen, "broker, nats, plugins, provisioner, aaa and replicator run as their own users")
	})

	t.Run("a dead process is restarted", func(t *testing.T) {
		var victim supervisor.Snapshot
		for _, s := range r.supervisor.Snapshots() {
			if s.Host == "server3" {
				victim = s
			}
		}
		require.NotZero(t, victim.PID)
		require.NoError(t, syscall.Kill(victim.PID, syscall.SIGKILL))
		require.Eventually(t, func() bool {
			for _, s := range r.supervisor.Snapshots() {
				if s.Host == "server3" && s.PID != 0 && s.PID != victim.PID && s.Restarts == 1 {
					return true
				}
			}
			return false
		}, 10*time.Second, 50*time.Millisecond)
		assert.NoError(t, waitPing(ctx, st, 10, time.Minute), "server3 answers again")
		logs, err := os.ReadFile(layout.ProcessLog("server3", "server"))
		require.NoError(t, err)
		assert.NotEmpty(t, logs)
	})

	t.Run("the fleet answers again after kill -9 of the broker", func(t *testing.T) {
		before, err := r.supervisor.Find("broker", "broker")
		require.NoError(t, err)
		pid := before.PID()
		took, err := brokerRecovery(ctx, r, st, 10)
		require.NoError(t, err)
		assert.NotEqual(t, pid, before.PID(), "a new broker process")
		assert.Positive(t, took)
		t.Logf("every server answered %.1fs after kill -9 of the broker", took)
	})

	t.Run("down leaves nothing behind", func(t *testing.T) {
		st, err := ReadState(layout)
		require.NoError(t, err)
		pids := labPIDs(st)
		r.Down()
		downed = true
		assertAllGone(t, pids, 5*time.Second)
		_, err = ReadState(layout)
		assert.True(t, errors.Is(err, ErrNotRunning))
	})
}

func TestLabCrashLeavesNothing(t *testing.T) {
	dirs := labtest.ProgramDirs(t)
	const servers = 10
	cmd, _ := labCommand(t, dirs, servers)
	require.NoError(t, cmd.Start())
	st := waitReady(t, cmd)
	// every server has restarted itself by exec after provisioning: from
	// whichever thread ran the restart, which often leaves it without the
	// parent-death signal; only the host's PID namespace ends it then
	layout := Layout{Dir: cmd.Args[2]}
	require.Eventually(t, func() bool {
		for i := 1; i <= servers; i++ {
			b, _ := os.ReadFile(layout.ProcessLog(fmt.Sprintf("server%d", i), "server"))
			if !strings.Contains(string(b), "Initiating Choria Server restart") {
				return false
			}
		}
		return true
	}, time.Minute, 100*time.Millisecond, "every server restarted after provisioning")
	time.Sleep(time.Second) // the exec itself
	pids := labPIDs(st)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	assertAllGone(t, pids, 5*time.Second)
}

// TestLabSurvivesAClosedStdout: when the program reading choria-lab's
// output goes away, the lab keeps running (it died of SIGPIPE before) and
// `down` still tears it down whole.
func TestLabSurvivesAClosedStdout(t *testing.T) {
	dirs := labtest.ProgramDirs(t)
	cmd, lab := labCommand(t, dirs, 2)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	require.NoError(t, out.Close(), "nobody reads the lab's progress")
	st := waitReady(t, cmd) // although its stdout is closed
	pids := labPIDs(st)
	down, err := exec.Command(lab, "--dir", cmd.Args[2], "down").CombinedOutput()
	require.NoError(t, err, "%s", down)
	assert.Contains(t, string(down), "stopped")
	_ = cmd.Wait()
	assertAllGone(t, pids, 5*time.Second)
}

func TestLabFailedStartLeavesNothing(t *testing.T) {
	dirs := labtest.ProgramDirs(t)
	// an aaasvc that never serves: the lab must give up and clean up
	broken := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(broken, "aaasvc"), []byte("#!/bin/sh\necho 'refusing to start' >&2\nexit 1\n"), 0o755))
	brokenDir, err := os.MkdirTemp("/var/tmp", "choria-lab-test-broken-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(brokenDir) })
	require.NoError(t, os.Chmod(brokenDir, 0o755), "aaasvc runs as its own user")
	require.NoError(t, os.Rename(filepath.Join(broken, "aaasvc"), filepath.Join(brokenDir, "aaasvc")))

	dir := t.TempDir()
	before := anchorsRunning(t)
	started := time.Now()
	_, err = Up(context.Background(), Options{Dir: dir, BinDirs: append([]string{brokenDir}, dirs...), Servers: 2, Timeout: 2 * time.Minute})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "aaasvc on aaa did not start serving")
	assert.Contains(t, err.Error(), "it died 3 times")
	assert.Less(t, time.Since(started), 30*time.Second, "a program that keeps dying fails the bring-up early")
	assert.Contains(t, err.Error(), filepath.Join(dir, "logs", "aaa", "aaasvc.log"))
	log, rerr := os.ReadFile(filepath.Join(dir, "logs", "aaa", "aaasvc.log"))
	require.NoError(t, rerr)
	assert.Contains(t, string(log), "refusing to start")
	_, serr := os.Stat(filepath.Join(dir, "lab.json"))
	assert.True(t, os.IsNotExist(serr), "no state of a lab that is not running")
	assert.Equal(t, before, anchorsRunning(t), "no anchor survives a failed start")
}

func TestLabRefusesMissingProgramsBeforeTouchingAnything(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: the root check comes first without root")
	}
	t.Setenv("PATH", t.TempDir())
	dir := filepath.Join(t.TempDir(), "lab")
	_, err := Up(context.Background(), Options{Dir: dir})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing programs")
	_, serr := os.Stat(dir)
	assert.True(t, os.IsNotExist(serr), "the lab directory must not be created")
}

func anchorsRunning(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(b), "netlab-anchor") {
			n++
		}
	}
	return n
}

// labCommand is `choria-lab --dir DIR up --servers N` with the test's
// programs, as a person runs it, and the choria-lab it runs.
func labCommand(t *testing.T, dirs []string, servers int) (*exec.Cmd, string) {
	t.Helper()
	args := []string{"--dir", t.TempDir(), "up", "--servers", strconv.Itoa(servers)}
	for _, d := range dirs {
		args = append(args, "--bin-dir", d)
	}
	lab := filepath.Join(dirs[len(dirs)-1], "choria-lab")
	return exec.Command(lab, args...), lab
}

// waitReady waits until the lab cmd started says it is up.
func waitReady(t *testing.T, cmd *exec.Cmd) *State {
	t.Helper()
	layout := Layout{Dir: cmd.Args[2]}
	var st *State
	require.Eventually(t, func() bool {
		s, err := ReadState(layout)
		if err == nil && s.Ready {
			st = s
			return true
		}
		return false
	}, 2*time.Minute, 100*time.Millisecond, "the lab in %s comes up", layout.Dir)
	return st
}
