package lab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteLogs(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	require.NoError(t, os.MkdirAll(l.Logs("broker"), 0o755))
	require.NoError(t, os.WriteFile(l.ProcessLog("broker", "broker"), []byte("one\ntwo\npartial"), 0o644))

	var b strings.Builder
	require.NoError(t, WriteLogs(&b, l, "broker", false, nil))
	assert.Equal(t, "one\ntwo\n", b.String(), "an unfinished last line waits until it is complete")

	require.NoError(t, os.WriteFile(l.ProcessLog("broker", "extra"), []byte("x\n"), 0o644))
	b.Reset()
	require.NoError(t, WriteLogs(&b, l, "broker", false, nil))
	assert.Equal(t, "broker: one\nbroker: two\nextra: x\n", b.String(), "several logs are prefixed with their process")

	err := WriteLogs(&b, l, "nosuchhost", false, nil)
	assert.ErrorContains(t, err, `no host "nosuchhost"`)
}

func TestWriteStatus(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	etc := l.HostEtcChoria("server1")
	require.NoError(t, os.MkdirAll(etc, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(etc, "server.jwt"), []byte("x"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(etc, "server.conf"), []byte("# header\nidentity=server1.choria.local\n"), 0o600))
	status := filepath.Join(t.TempDir(), "choria-status.json")
	require.NoError(t, os.WriteFile(status, []byte(`{"connected_server":"nats://broker.choria.local:4222","provisioning_mode":false}`), 0o644))

	self := os.Getpid()
	st := &State{PID: self, Hosts: []HostState{
		{Name: "broker", Role: "broker", AnchorPID: self, Processes: []supervisor.Snapshot{{Host: "broker", Name: "broker", PID: self}}},
		{Name: "server1", Role: "server", AnchorPID: self, StatusFile: status, Processes: []supervisor.Snapshot{{Host: "server1", Name: "server", PID: self, Restarts: 2}}},
		{Name: "server2", Role: "server", AnchorPID: self, Processes: []supervisor.Snapshot{{Host: "server2", Name: "server", PID: self}}},
		{Name: "aaa", Role: "aaa", AnchorPID: self, Processes: []supervisor.Snapshot{{Host: "aaa", Name: "aaasvc", PID: 0, Restarts: 3, LastExit: "exit status 1"}}},
	}}
	var b strings.Builder
	WriteStatus(&b, l, st)
	out := b.String()
	assert.Regexp(t, `server1 +server +server +\d+ +2 +provisioned, connected to nats://broker.choria.local:4222`, out)
	assert.Regexp(t, `server2 +server +server +\d+ +0 +unprovisioned`, out)
	assert.Regexp(t, `aaa +aaa +aaasvc +0 +3 +down \(exit status 1\)`, out)
	assert.Regexp(t, `broker +broker +broker +\d+ +0 +up`, out)
}

func TestWriteCluster(t *testing.T) {
	dir := t.TempDir()
	status := func(name, broker string) string {
		f := filepath.Join(dir, name+".json")
		require.NoError(t, os.WriteFile(f, []byte(`{"connected_server":"nats://`+broker+`:4222"}`), 0o644))
		return f
	}
	st := &State{Hosts: []HostState{
		{Name: "broker", Role: "broker", FQDN: "broker.choria.local"},
		{Name: "broker2", Role: "broker", FQDN: "broker2.choria.local"},
		{Name: "broker3", Role: "broker", FQDN: "broker3.choria.local"},
		{Name: "server1", Role: "server", StatusFile: status("server1", "broker2.choria.local")},
		{Name: "server2", Role: "server", StatusFile: status("server2", "broker2.choria.local")},
		{Name: "server3", Role: "server", StatusFile: status("server3", "broker.choria.local")},
	}}
	var b strings.Builder
	WriteCluster(&b, st, []BrokerView{
		{Broker: "broker", Routes: []string{"broker2.choria.local", "broker3.choria.local"}, MetaLeader: "broker2.choria.local"},
		{Broker: "broker2", Routes: []string{"broker.choria.local"}, MetaLeader: "broker2.choria.local"},
		{Broker: "broker3", Err: errors.New("asking the broker's monitoring port for /routez: connection refused")},
	})
	out := b.String()
	assert.Regexp(t, `broker +broker2.choria.local, broker3.choria.local +broker2.choria.local +1\n`, out)
	assert.Regexp(t, `broker2 +broker.choria.local +broker2.choria.local +2\n`, out)
	assert.Regexp(t, `broker3 +asking the broker's monitoring port for /routez: connection refused +0\n`, out)
}
