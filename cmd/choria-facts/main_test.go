package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// TestGather: one line says where the facts went, or why they did not.
func TestGather(t *testing.T) {
	asRoot := facts.Gatherer{IsRoot: func() bool { return true }, Collect: func() (any, error) { return map[string]int{"a": 1}, nil }}
	out := filepath.Join(t.TempDir(), "facts.json")

	stdout, stderr := &bytes.Buffer{}, &bytes.Buffer{}
	require.Equal(t, 0, gather(out, stdout, stderr, asRoot), stderr.String())
	require.Equal(t, "wrote facts to "+out+"\n", stdout.String())
	require.Empty(t, stderr.String())
	dat, err := os.ReadFile(out)
	require.NoError(t, err)
	require.JSONEq(t, `{"a":1}`, string(dat))

	stdout.Reset()
	require.Equal(t, 1, gather(out, stdout, stderr, facts.Gatherer{IsRoot: func() bool { return false }}))
	require.Empty(t, stdout.String())
	require.Equal(t, "choria-facts: gathering facts requires root, running as uid "+strconv.Itoa(os.Geteuid())+"\n", stderr.String())
}

// TestUsage: a usage error is one line and exit status 2, before anything
// is gathered.
func TestUsage(t *testing.T) {
	bin, _ := buildGather(t)
	for args, says := range map[string]string{
		"--bogus":  "choria-facts: unknown long flag '--bogus'\n",
		"extra":    "choria-facts: unexpected argument extra\n",
		"--output": "choria-facts: expected argument for flag '--output'\n",
	} {
		code, stdout, stderr := runProgram(exec.Command(bin, args))
		require.Equal(t, 2, code, "%s: %s", args, stderr)
		require.Empty(t, stdout, args)
		require.Equal(t, says, stderr, args)
	}
}
