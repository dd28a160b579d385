package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reproducible-choria/deployment/internal/netlab/netlabtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hangingChoria puts a `choria` that prints nothing and hangs where the
// one-host lab's commands find it, and returns the lab's state.
func hangingChoria(t *testing.T) *State {
	t.Helper()
	h := netlabtest.OneHost(t)
	dir, err := os.MkdirTemp("/var/tmp", "hanging-choria-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "choria"), []byte("#!/bin/sh\nexec sleep 600\n"), 0o755))
	return &State{
		Env:   []string{"PATH=" + dir + ":/usr/bin:/bin"},
		Hosts: []HostState{{Name: "client", Role: "client", FQDN: "client.lab.test", AnchorPID: h.AnchorPID()}},
	}
}

// zombieChildren lists this process's children that ended and were not
// waited for.
func zombieChildren(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var zombies []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(os.Getpid()) {
			zombies = append(zombies, pid)
		}
	}
	return zombies
}

// TestLoginGivenUpLeavesNoZombie: a login that never prompts is killed
// and waited for when its time is up.
func TestLoginGivenUpLeavesNoZombie(t *testing.T) {
	st := hangingChoria(t)
	before := len(zombieChildren(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := Login(ctx, st, "client", "choria", "pw")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `did not prompt "Username"`)
	assert.Len(t, zombieChildren(t), before, "choria login was killed and not waited for")
}

// TestWaitPingHonoursItsContext: a choria ping that hangs does not hold
// the wait past its context.
func TestWaitPingHonoursItsContext(t *testing.T) {
	st := hangingChoria(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := waitPing(ctx, st, 1, time.Minute)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "the hanging ping was not ended with the context")
}
