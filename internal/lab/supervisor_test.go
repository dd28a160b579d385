package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/testenv"
)

// oneHost brings up a lab of one host on one network, for tests that need
// a host but no upstream program.
func oneHost(t *testing.T) (*netlab.Host, Layout) {
	t.Helper()
	testenv.RequireRoot(t)
	if err := netlab.Preflight(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	dir := t.TempDir()
	layout := Layout{Dir: dir}
	spec := netlab.Spec{
		Networks: []netlab.Network{{Name: "net", Subnet: netip.MustParsePrefix("198.18.0.0/24")}},
		Hosts: []netlab.HostSpec{{
			Name: "box", FQDN: "box.lab.test", Root: layout.NSRoot("box"),
			Addresses: []netlab.Address{{Network: "net", Addr: netip.MustParseAddr("198.18.0.10")}},
			HostsFile: []byte("127.0.0.1 localhost\n"),
		}},
	}
	l, err := netlab.Up(context.Background(), spec, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	h, ok := l.Host("box")
	require.True(t, ok)
	return h, layout
}

// TestSupervisedOutputIsASocket: a supervised process gets what systemd
// gives a service logging to the journal, a write-only stream socket, so a
// program that opens /dev/stdout fails here as it would under systemd.
func TestSupervisedOutputIsASocket(t *testing.T) {
	h, layout := oneHost(t)
	s := NewSupervisor(layout, []string{"PATH=/usr/bin:/bin"}, "/usr/bin/setpriv", t.Logf)
	script := `echo out; echo err >&2
readlink /proc/self/fd/1
if echo x > /dev/stdout; then echo opened-dev-stdout; else echo refused-dev-stdout; fi
if read -t 1 line <&1; then echo readable; else echo not-readable; fi
exec sleep 600`
	_, err := s.Start(h, Process{Name: "probe", Argv: []string{"/bin/sh", "-c", script}})
	require.NoError(t, err)
	defer s.Stop()

	logPath := layout.ProcessLog("box", "probe")
	var log string
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logPath)
		log = string(b)
		return strings.Contains(log, "readable")
	}, 10*time.Second, 50*time.Millisecond, "log so far: %q", log)
	assert.Contains(t, log, "out\n")
	assert.Contains(t, log, "err\n")
	assert.Contains(t, log, "socket:[")
	assert.Contains(t, log, "refused-dev-stdout")
	assert.Contains(t, log, "not-readable")
	assert.Equal(t, filepath.Join(layout.Logs("box"), "probe.log"), logPath)
}

// TestSupervisorRestartsAndStops: a process that dies is restarted with
// back-off and its death logged; Stop ends it.
func TestSupervisorRestartsAndStops(t *testing.T) {
	h, layout := oneHost(t)
	var (
		mu      sync.Mutex
		reports []string
	)
	s := NewSupervisor(layout, []string{"PATH=/usr/bin:/bin"}, "/usr/bin/setpriv", func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, fmt.Sprintf(format, args...))
	})
	sp, err := s.Start(h, Process{Name: "flaky", Argv: []string{"/bin/sh", "-c", "echo run; sleep 0.2; exit 3"}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sp.Restarts() >= 2 }, 10*time.Second, 50*time.Millisecond)
	s.Stop()
	snap := s.Snapshots()
	require.Len(t, snap, 1)
	assert.Equal(t, "exit status 3", snap[0].LastExit)
	runs := func() int {
		b, _ := os.ReadFile(layout.ProcessLog("box", "flaky"))
		return strings.Count(string(b), "run\n")
	}
	require.Eventually(t, func() bool { return runs() >= 2 }, 2*time.Second, 20*time.Millisecond)
	before := runs()
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, before, runs(), "nothing restarts after Stop")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, reports)
	assert.Contains(t, reports[0], "flaky on box died (exit status 3); restarting in 250ms")
}

// TestStopReachesWhatAProcessStarted: Stop signals each process's group,
// so what a supervised program started ends with it.
func TestStopReachesWhatAProcessStarted(t *testing.T) {
	h, layout := oneHost(t)
	s := NewSupervisor(layout, []string{"PATH=/usr/bin:/bin"}, "/usr/bin/setpriv", t.Logf)
	// the shell traps TERM only to record it; its child sleeps on
	_, err := s.Start(h, Process{Name: "parent", Argv: []string{"/bin/sh", "-c", `sleep 600 & echo child $!; trap 'echo term; exit 0' TERM; wait`}})
	require.NoError(t, err)
	// the child's pid as this machine sees it (the host has its own PID
	// namespace, where $! is another number)
	var child int
	require.Eventually(t, func() bool {
		snap := s.Snapshots()
		if len(snap) != 1 || snap[0].PID == 0 {
			return false
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", snap[0].PID, snap[0].PID))
		_, err := fmt.Sscanf(string(b), "%d", &child)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, syscall.Kill(child, 0), "the child runs")
	s.Stop()
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		return err != nil || strings.Contains(string(b), ") Z ")
	}, 5*time.Second, 20*time.Millisecond, "the child of a supervised process ends with it")
	b, _ := os.ReadFile(layout.ProcessLog("box", "parent"))
	assert.Contains(t, string(b), "term", "the program itself got SIGTERM")
}
