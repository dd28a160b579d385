package faults

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/clilog"
	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/lab/labtest"
	"github.com/reproducible-choria/deployment/internal/netlab/netlabtest"
	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/internal/walkthrough"
)

func TestMain(m *testing.M) { netlabtest.Main(m) }

// failover is how soon every server must answer again after a broker of a
// cluster dies: its servers' connections are closed by the kernel and
// they connect to another broker at once.
const failover = 10 * time.Second

// afterPartition bounds how soon every server answers once a broker cut off
// for 30 s is reachable again. Its servers cannot tell a silent link from
// an idle one (go-choria servers ping their broker every two minutes, not
// configurable), so they stay with it; their connections carry on when
// TCP next retransmits what they sent meanwhile, and a 30 s outage has
// backed TCP's retransmission timer off to 13-26 s (measured 4-29 s).
const afterPartition = 45 * time.Second

// partition is how long a broker is cut off. What was stored before must
// be read from the other two within it, once they notice; each `choria`
// command that tries the cut-off broker first waits out its connect
// timeout (2 s) before it tries another.
const partition = 30 * time.Second

// up brings a fresh lab up for a test, logged in as admin (who may read
// the streams), with the registration and submission streams made as the
// walkthrough makes them, every server registered and one submission of
// each stored.
func up(t *testing.T, ctx context.Context, brokers int) *Fleet {
	t.Helper()
	dirs := labtest.ProgramDirs(t)
	var progress strings.Builder
	start := time.Now()
	r, err := lab.Up(ctx, lab.Options{Dir: t.TempDir(), BinDirs: dirs, Servers: 10, Brokers: brokers, Log: clilog.New(&progress, "choria-lab", slog.LevelInfo)})
	require.NoError(t, err, progress.String())
	t.Cleanup(r.Down)
	t.Logf("lab with %d broker(s) up in %s", brokers, time.Since(start).Round(100*time.Millisecond))

	f := New(r)
	_, err = f.Login(ctx, "admin")
	require.NoError(t, err)
	reg, sub, n := f.Topology.Streams.Registration, f.Topology.Streams.Submission, f.Topology.StreamReplicas()
	// as the walkthrough makes them
	_, err = f.Client(ctx, shellquote.Join("choria", "broker", "stream", "add", reg.Name, "--subjects", strings.Join(reg.Subjects, " "),
		"--max-msgs-per-subject", "5", "--max-age", "1d", "--replicas", strconv.Itoa(n), "--defaults")+" && "+
		shellquote.Join("choria", "broker", "stream", "add", sub.Name, "--subjects", strings.Join(sub.Subjects, " "), "--replicas", strconv.Itoa(n), "--defaults"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := f.Snapshot(ctx)
		return err == nil
	}, time.Minute, time.Second, "every server registers")
	subjects, err := f.SubmitAll(ctx, "hello.fault.setup")
	require.NoError(t, err)
	_, err = f.WaitDelivered(ctx, subjects, time.Now(), 30*time.Second)
	require.NoError(t, err)
	return f
}

// checkNothingLost fails the test for every message of s the streams no
// longer hold, and returns how many were checked.
func checkNothingLost(t *testing.T, ctx context.Context, f *Fleet, s *Stored) int {
	t.Helper()
	lost, err := f.Lost(ctx, s)
	require.NoError(t, err)
	assert.Empty(t, lost, "messages stored before the fault are gone")
	return s.Count()
}

// checkUsers: a user logs in and sends a request the AAA service signs,
// which every server answers.
func checkUsers(t *testing.T, ctx context.Context, f *Fleet, answering int) {
	t.Helper()
	out, err := f.Login(ctx, "admin")
	require.NoError(t, err, "choria login: %s", out)
	if answering == f.Servers() {
		assert.NoError(t, f.SignedRequest(ctx))
	}
}

// TestClusterFaults: on one cluster of three brokers, kill -9 of a broker
// and a broker cut off for 30 s; the fleet keeps answering, loses no
// stored message, keeps its users' logins and signed requests working,
// and the broker rejoins and catches up with no split brain. Then the
// whole walkthrough passes on the cluster that went through it all.
func TestClusterFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	f := up(t, ctx, 3)
	streams := []string{f.Topology.Streams.Registration.Name, f.Topology.Streams.Submission.Name}

	t.Run("kill -9 of one broker of three", func(t *testing.T) {
		before, err := f.Snapshot(ctx)
		require.NoError(t, err)
		victim, moved := f.Victim()
		fqdn := f.Topology.FQDN(victim)

		start := time.Now()
		require.NoError(t, f.Lab.Kill(victim, "broker", true))
		took, err := f.WaitAnswering(ctx, start, time.Minute)
		require.NoError(t, err)
		t.Logf("kill -9 of %s (%d servers connected to it): every server answered choria ping again after %s", victim, moved, took.Round(100*time.Millisecond))
		assert.LessOrEqual(t, took, failover, "every server answers within %s of the broker's death", failover)

		checked := checkNothingLost(t, ctx, f, before)
		t.Logf("%d stored messages checked (%d registrations, %d submissions): none lost", checked, len(before.Registration), checked-len(before.Registration))
		checkUsers(t, ctx, f, f.Servers())
		during, err := f.SubmitAll(ctx, "hello.fault.kill")
		require.NoError(t, err)
		_, err = f.WaitDelivered(ctx, during, time.Now(), 30*time.Second)
		require.NoError(t, err, "submissions while a broker is down are stored")
		running, err := f.Lab.ProcessRunning(victim, "broker")
		require.NoError(t, err)
		require.False(t, running, "the broker stayed down throughout")

		restarted := time.Now()
		require.NoError(t, f.Lab.Resume(victim, "broker"))
		for _, s := range streams {
			took, err := f.WaitCurrent(ctx, s, fqdn, restarted, 2*time.Minute)
			require.NoError(t, err)
			t.Logf("%s restarted: its replica of %s current after %s", victim, s, took.Round(100*time.Millisecond))
		}
		took, err = f.WaitAgreed(ctx, restarted, time.Minute, streams...)
		require.NoError(t, err)
		t.Logf("every broker holds the same %s after %s", strings.Join(streams, " and "), took.Round(100*time.Millisecond))
	})

	t.Run("a broker cut off for 30 s", func(t *testing.T) {
		before, err := f.Snapshot(ctx)
		require.NoError(t, err)
		victim, cut := f.Victim()

		start := time.Now()
		require.NoError(t, f.Lab.Disconnect(victim))
		healed := false
		defer func() {
			if !healed {
				_ = f.Lab.Reconnect(victim)
			}
		}()
		// what users do meanwhile: log in, submit (the servers cut off with
		// the broker keep theirs in their spool), read what was stored,
		// ask. What is connected to the cut-off broker, servers and
		// services alike, stays with it (see afterPartition): a request
		// fails when the AAA service that signs it is among them.
		out, err := f.Login(ctx, "admin")
		require.NoError(t, err, "choria login while a broker is cut off: %s", out)
		during, err := f.SubmitAll(ctx, "hello.fault.partition")
		require.NoError(t, err)
		took, err := f.WaitNothingLost(ctx, before, start, time.Until(start.Add(partition)))
		require.NoError(t, err, "what was stored is read from the other brokers while one is cut off")
		t.Logf("%s cut off: the %d messages stored before (%d registrations, %d submissions) were all read from the other brokers %s after the cut",
			victim, before.Count(), len(before.Registration), before.Count()-len(before.Registration), took.Round(100*time.Millisecond))
		meanwhile := "no time was left for choria ping"
		if left := time.Until(start.Add(partition)); left > 0 {
			pctx, cancel := context.WithTimeout(ctx, left)
			answering, err := f.Answering(pctx)
			cancel()
			meanwhile = fmt.Sprintf("%d of %d servers answered choria ping", answering, f.Servers())
			if err != nil {
				meanwhile = fmt.Sprintf("choria ping failed (%v)", err)
			}
		}

		require.NoError(t, poll.Sleep(ctx, time.Until(start.Add(partition))))
		healedAt := time.Now()
		require.NoError(t, f.Lab.Reconnect(victim))
		healed = true
		t.Logf("%s cut off for %s with %d servers connected to it; meanwhile %s", victim, healedAt.Sub(start).Round(100*time.Millisecond), cut, meanwhile)

		took, err = f.WaitAnswering(ctx, healedAt, time.Minute)
		require.NoError(t, err)
		t.Logf("healed: every server answered choria ping again after %s", took.Round(100*time.Millisecond))
		assert.LessOrEqual(t, took, afterPartition, "every server answers within %s of the healing", afterPartition)

		// the registrations stored before have made way for newer ones by
		// now (five a server): the submissions, kept for ever, are checked
		checked := checkNothingLost(t, ctx, f, &Stored{Submissions: before.Submissions})
		took, err = f.WaitDelivered(ctx, during, healedAt, time.Minute)
		require.NoError(t, err)
		t.Logf("%d submissions stored before checked after the healing: none lost; the %d submitted during the partition all stored once, %s after the healing", checked, len(during), took.Round(100*time.Millisecond))
		checkUsers(t, ctx, f, f.Servers())

		took, err = f.WaitAgreed(ctx, healedAt, time.Minute, streams...)
		require.NoError(t, err, "no split brain")
		t.Logf("no split brain: every broker names one leader and holds the same sequence of %s %s after the healing", strings.Join(streams, " and "), took.Round(100*time.Millisecond))
		for _, s := range streams {
			_, err := f.WaitCurrent(ctx, s, f.Topology.FQDN(victim), healedAt, time.Minute)
			require.NoError(t, err)
		}
	})

	t.Run("the walkthrough passes on the cluster after its faults", func(t *testing.T) {
		var out strings.Builder
		rep, err := walkthrough.RunLab(ctx, walkthrough.LabOptions{Layout: f.Lab.Plan.Layout, Out: &out})
		t.Logf("walkthrough on three brokers:\n%s", out.String())
		require.NoError(t, err)
		assert.True(t, rep.OK())
	})
}
