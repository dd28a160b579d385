package facts

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func asRoot() bool  { return true }
func notRoot() bool { return false }
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestGatherWritesSysInfoFacts(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "facts.json")
	// an older facts file is replaced
	require.NoError(t, os.WriteFile(out, []byte(`{"old":true}`), 0o600))

	require.NoError(t, Gatherer{IsRoot: asRoot}.Gather(out))

	dat, err := os.ReadFile(out)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(dat, []byte("{\n  \"")), "facts are indented JSON")

	// the fields choria facts, inventory and -F discovery are shown with
	facts := map[string]any{}
	require.NoError(t, json.Unmarshal(dat, &facts))
	require.NotContains(t, facts, "old")
	memory := facts["memory"].(map[string]any)
	require.Greater(t, memory["size"], 0.0, "memory.size from /proc/meminfo")
	node := facts["node"].(map[string]any)
	hostname, _ := os.ReadFile("/proc/sys/kernel/hostname")
	require.Equal(t, strings.TrimSpace(string(hostname)), node["hostname"])
	require.Contains(t, facts, "kernel")
	require.Contains(t, facts, "os")
	require.Contains(t, facts, "cpu")

	st, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	require.Equal(t, []string{"facts.json"}, entries(t, dir), "no temporary files left")
}

func TestGatherRefusesWithoutRoot(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "facts.json")
	require.NoError(t, os.WriteFile(out, []byte(`{"old":true}`), 0o600))

	collected := false
	err := Gatherer{
		IsRoot:  notRoot,
		Collect: func() (any, error) { collected = true; return nil, nil },
	}.Gather(out)

	require.ErrorIs(t, err, ErrNotRoot)
	require.False(t, collected, "nothing is gathered without root")

	dat, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, `{"old":true}`, string(dat))
	require.Equal(t, []string{"facts.json"}, entries(t, dir))
}

func TestGatherFailuresLeavePreviousFacts(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "facts.json")
	require.NoError(t, os.WriteFile(out, []byte(`{"old":true}`), 0o600))

	cases := map[string]struct {
		g    Gatherer
		path string
		msg  string
	}{
		"collect error": {
			g:    Gatherer{IsRoot: asRoot, Collect: func() (any, error) { return nil, errors.New("boom") }},
			path: out, msg: "collecting facts: boom",
		},
		"unencodable facts": {
			g:    Gatherer{IsRoot: asRoot, Collect: func() (any, error) { return map[string]any{"f": func() {}}, nil }},
			path: out, msg: "writing facts: encoding JSON",
		},
		"missing directory": {
			g:    Gatherer{IsRoot: asRoot, Collect: func() (any, error) { return map[string]int{"a": 1}, nil }},
			path: filepath.Join(dir, "missing", "facts.json"), msg: "creating temporary file in " + filepath.Join(dir, "missing"),
		},
		"target is a directory": {
			g:    Gatherer{IsRoot: asRoot, Collect: func() (any, error) { return map[string]int{"a": 1}, nil }},
			path: dir, msg: "renaming",
		},
	}

	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := tc.g.Gather(tc.path)
			require.ErrorContains(t, err, tc.msg)

			dat, err := os.ReadFile(out)
			require.NoError(t, err)
			require.Equal(t, `{"old":true}`, string(dat))
			require.Equal(t, []string{"facts.json"}, entries(t, dir))
		})
	}
}

func TestDefaultRootCheck(t *testing.T) {
	require.Equal(t, os.Geteuid() == 0, Gatherer{}.isRoot())
}
