package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/topology"
)

// TestSingleBrokerFaults: on the default topology, the one broker killed
// and kept down while the servers submit reliably, then the provisioner
// down while new servers wait, then the AAA service down.
func TestSingleBrokerFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f := up(t, ctx, 1)
	broker := f.Topology.BrokerHosts()[0].Name

	t.Run("kill -9 of the broker while servers submit", func(t *testing.T) {
		before, err := f.Snapshot(ctx)
		require.NoError(t, err)
		require.NoError(t, f.Lab.Kill(broker, "broker", true))
		killed := time.Now()
		// two reliable submissions on every server while it is down: they
		// wait in the servers' spools
		var subjects []string
		for round := 1; round <= 2; round++ {
			s, err := f.SubmitAll(ctx, fmt.Sprintf("hello.fault.down%d", round))
			require.NoError(t, err)
			subjects = append(subjects, s...)
		}
		require.NoError(t, poll.Sleep(ctx, time.Until(killed.Add(10*time.Second))))
		running, err := f.Lab.ProcessRunning(broker, "broker")
		require.NoError(t, err)
		require.False(t, running, "the broker stayed down throughout")

		back := time.Now()
		require.NoError(t, f.Lab.Resume(broker, "broker"))
		took, err := f.WaitAnswering(ctx, back, 2*time.Minute)
		require.NoError(t, err)
		t.Logf("broker down %s: every server reconnected and answered choria ping %s after it returned", back.Sub(killed).Round(100*time.Millisecond), took.Round(100*time.Millisecond))

		took, err = f.WaitDelivered(ctx, subjects, back, 2*time.Minute)
		require.NoError(t, err)
		// a late duplicate would show now
		require.NoError(t, poll.Sleep(ctx, 5*time.Second))
		_, err = f.WaitDelivered(ctx, subjects, back, time.Minute)
		require.NoError(t, err)
		checked := checkNothingLost(t, ctx, f, before)
		t.Logf("the %d submissions made while the broker was down were all stored exactly once, %s after it returned; %d messages stored before checked, none lost", len(subjects), took.Round(100*time.Millisecond), checked)
	})

	t.Run("provisioner down while new servers wait", func(t *testing.T) {
		provisioner := f.Topology.MustHost(topology.RoleProvisioner).Name
		require.NoError(t, f.Lab.Kill(provisioner, "provisioner", true))
		// two servers become new ones: nothing but provisioning.jwt
		fresh := []string{f.Topology.ServerName(f.Servers() - 1), f.Topology.ServerName(f.Servers())}
		for _, s := range fresh {
			require.NoError(t, f.Lab.Kill(s, "server", true))
			require.Eventually(t, func() bool {
				running, err := f.Lab.ProcessRunning(s, "server")
				return err == nil && !running
			}, 10*time.Second, 50*time.Millisecond)
			for _, name := range []string{"server.conf", "server.jwt", "server.seed"} {
				require.NoError(t, os.Remove(filepath.Join(f.Lab.Plan.Layout.HostEtcChoria(s), name)))
			}
			require.NoError(t, f.Lab.Resume(s, "server"))
		}
		require.NoError(t, poll.Sleep(ctx, 10*time.Second))
		for _, s := range fresh {
			assert.False(t, f.Lab.Plan.Layout.Provisioned(s), "%s is provisioned with the provisioner down", s)
		}
		answering, err := f.Answering(ctx)
		require.NoError(t, err)
		assert.Equal(t, f.Servers()-len(fresh), answering, "the waiting servers do not answer")

		back := time.Now()
		require.NoError(t, f.Lab.Resume(provisioner, "provisioner"))
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		require.NoError(t, poll.Until(ctx, 200*time.Millisecond, func() (bool, error) {
			return f.Lab.Plan.Layout.Provisioned(fresh[0]) && f.Lab.Plan.Layout.Provisioned(fresh[1]), nil
		}), "the waiting servers are provisioned once the provisioner is back")
		provisioned := time.Since(back)
		took, err := f.WaitAnswering(ctx, back, 2*time.Minute)
		require.NoError(t, err)
		t.Logf("provisioner back: %s provisioned after %s, every server answered after %s", fresh, provisioned.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	})

	t.Run("AAA service down", func(t *testing.T) {
		aaa := f.Topology.MustHost(topology.RoleAAA).Name
		require.NoError(t, f.Lab.Kill(aaa, "aaasvc", true))
		require.Eventually(t, func() bool {
			running, err := f.Lab.ProcessRunning(aaa, "aaasvc")
			return err == nil && !running
		}, 10*time.Second, 50*time.Millisecond)
		out, err := f.Login(ctx, "choria")
		require.Error(t, err, "choria login with the AAA service down")
		t.Logf("choria login with the AAA service down: %v", err)
		assert.Contains(t, out, f.Topology.FQDN(aaa), "the message names the login service")
		assert.Contains(t, out, "connection refused", "the message says why")

		back := time.Now()
		require.NoError(t, f.Lab.Resume(aaa, "aaasvc"))
		require.NoError(t, f.Lab.WaitServing(ctx, aaa))
		out, err = f.Login(ctx, "choria")
		require.NoError(t, err, "choria login with the AAA service back: %s", out)
		require.NoError(t, f.SignedRequest(ctx))
		t.Logf("AAA service back: choria login and a signed request worked %s after it was started again", time.Since(back).Round(100*time.Millisecond))
	})
}
