package lab

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStateNeedsTheLock: lab.json left by a lab that crashed names a pid
// another process may have by now; without the lab's lock held it is not
// a running lab, so `down` signals nothing.
func TestStateNeedsTheLock(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	bystander := exec.Command("sleep", "30")
	require.NoError(t, bystander.Start())
	defer func() { _ = bystander.Process.Kill(); _ = bystander.Wait() }()
	require.NoError(t, writeState(l.State(), &State{PID: bystander.Process.Pid}))

	_, err := ReadState(l)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrNotRunning), err.Error())
	assert.Contains(t, err.Error(), "did not stop")
	assert.NoError(t, bystander.Process.Signal(syscall.Signal(0)), "the bystander is untouched")

	lock, err := lockDir(l)
	require.NoError(t, err)
	st, err := ReadState(l)
	require.NoError(t, err, "a lab holding its lock is running")
	assert.Equal(t, bystander.Process.Pid, st.PID)
	require.NoError(t, lock.Close())
	_, err = ReadState(l)
	assert.True(t, errors.Is(err, ErrNotRunning), "the lock goes with the process that held it")
	_ = os.Remove(l.State())
}

// TestRemoveStateTakesItsLeftovers: the state and the temporaries of a
// writer that crashed go; nothing else does.
func TestRemoveStateTakesItsLeftovers(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	require.NoError(t, writeState(l.State(), &State{PID: 1}))
	left := filepath.Join(l.Dir, ".lab.json.tmp-123456")
	other := filepath.Join(l.Dir, ".lock.tmp-1")
	for _, p := range []string{left, other} {
		require.NoError(t, os.WriteFile(p, nil, 0o600))
	}
	removeState(l)
	assert.NoFileExists(t, l.State())
	assert.NoFileExists(t, left)
	assert.FileExists(t, other)
}
