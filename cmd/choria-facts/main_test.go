package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/reproducible-choria/deployment/internal/facts"
	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/stretchr/testify/require"
)

// buildGather compiles the gatherer into a directory any user may enter, so
// it can also be run as nobody.
func buildGather(t *testing.T) (string, string) {
	t.Helper()

	dir, err := os.MkdirTemp("", "choria-facts-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))

	testenv.Build(t, dir, "./cmd/choria-facts")
	return filepath.Join(dir, "choria-facts"), dir
}

func runProgram(cmd *exec.Cmd) (int, string, string) {
	stdout, stderr := &bytes.Buffer{}, &bytes.Buffer{}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return code, stdout.String(), stderr.String()
}

func TestGatherAsRoot(t *testing.T) {
	testenv.RequireRoot(t)

	bin, dir := buildGather(t)
	out := filepath.Join(dir, "facts.json")

	code, stdout, stderr := runProgram(exec.Command(bin, "--output", out))
	require.Equal(t, 0, code, "stderr: %s", stderr)
	require.Equal(t, "wrote facts to "+out+"\n", stdout)

	dat, err := os.ReadFile(out)
	require.NoError(t, err)
	facts := map[string]any{}
	require.NoError(t, json.Unmarshal(dat, &facts))
	require.Greater(t, facts["memory"].(map[string]any)["size"], 0.0)
}

func TestGatherWithoutRoot(t *testing.T) {
	bin, dir := buildGather(t)
	out := filepath.Join(dir, "facts.json")
	require.NoError(t, os.WriteFile(out, []byte(`{"previous":true}`), 0o644))
	before, err := os.Stat(out)
	require.NoError(t, err)

	// the machine directory is world writable here so that only the root
	// check, not file permissions, can stop the gatherer
	require.NoError(t, os.Chmod(dir, 0o777))

	cmd := exec.Command(bin, "--output", out)
	if os.Geteuid() == 0 {
		uid, gid := testenv.Nobody(t)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	}

	code, stdout, stderr := runProgram(cmd)
	require.Equal(t, 1, code)
	require.Empty(t, stdout)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	require.True(t, strings.HasPrefix(stderr, "choria-facts: gathering facts requires root"), stderr)

	dat, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, `{"previous":true}`, string(dat))
	after, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, before.ModTime(), after.ModTime())

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "only the binary and the facts file")
}

// TestRun: the facts file is --output, one line says where, and every
// failure is one line and an exit status: 2 for a usage error, 1 for a
// failed gather.
func TestRun(t *testing.T) {
	asRoot := facts.Gatherer{IsRoot: func() bool { return true }, Collect: func() (any, error) { return map[string]int{"a": 1}, nil }}
	notRoot := facts.Gatherer{IsRoot: func() bool { return false }}
	out := filepath.Join(t.TempDir(), "facts.json")

	stdout, stderr := &bytes.Buffer{}, &bytes.Buffer{}
	require.Equal(t, 0, run([]string{"--output", out}, stdout, stderr, asRoot), stderr.String())
	require.Equal(t, "wrote facts to "+out+"\n", stdout.String())
	require.Empty(t, stderr.String())
	dat, err := os.ReadFile(out)
	require.NoError(t, err)
	require.JSONEq(t, `{"a":1}`, string(dat))

	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--bogus"}, 2, "choria-facts: unknown long flag '--bogus'"},
		{[]string{"extra"}, 2, "choria-facts: unexpected argument extra"},
		{[]string{"--output"}, 2, "choria-facts: expected argument for flag '--output'"},
		// without --output the server's facts file is the target; not root,
		// so nothing is touched
		{nil, 1, "choria-facts: gathering facts requires root"},
	} {
		stdout, stderr := &bytes.Buffer{}, &bytes.Buffer{}
		require.Equal(t, tc.code, run(tc.args, stdout, stderr, notRoot), "%q: %s", tc.args, stderr)
		require.Empty(t, stdout.String(), tc.args)
		require.Equal(t, 1, strings.Count(stderr.String(), "\n"), "%q: one line: %q", tc.args, stderr)
		require.True(t, strings.HasPrefix(stderr.String(), tc.says), "%q: %q", tc.args, stderr)
	}
}
