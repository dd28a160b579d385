package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/choria-io/go-choria/aagent/watchers/pluginswatcher"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/machines/machinetest"
)

func cmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	stdout, stderr := &bytes.Buffer{}, &bytes.Buffer{}
	code := run(args, stdout, stderr)
	return code, stdout.String(), stderr.String()
}

// pack builds both archives and the manifest into a fresh directory.
func pack(t *testing.T) string {
	t.Helper()

	dir := t.TempDir()
	manifest := filepath.Join(dir, "plugins.json")
	htdocs := filepath.Join(dir, "htdocs")

	// the test binary is an ELF for this machine, standing in for the agent
	code, out, errOut := cmd(t, "requests", "--binary", os.Args[0], "--out-dir", htdocs, "--base-url", "http://plugins.choria.local/", "--manifest", manifest)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, fmt.Sprintf("requests-agent_0.0.1_linux_%s.tar.gz", runtime.GOARCH))
	require.Contains(t, out, "requests/SHA256SUMS")

	code, _, errOut = cmd(t, "check-choria", "--out-dir", htdocs, "--base-url", "http://plugins.choria.local", "--manifest", manifest)
	require.Equal(t, 0, code, errOut)

	return dir
}

func TestArchivesAreReproducible(t *testing.T) {
	a, b := pack(t), pack(t)

	for _, f := range []string{
		"plugins.json",
		"htdocs/check_choria-1.0.0.tar.gz",
		fmt.Sprintf("htdocs/requests-agent_0.0.1_linux_%s.tar.gz", runtime.GOARCH),
	} {
		da, err := os.ReadFile(filepath.Join(a, f))
		require.NoError(t, err)
		db, err := os.ReadFile(filepath.Join(b, f))
		require.NoError(t, err)
		require.Equal(t, da, db, "%s differs between builds", f)
	}

	dat, err := os.ReadFile(filepath.Join(a, "plugins.json"))
	require.NoError(t, err)
	var managed []pluginswatcher.ManagedPlugin
	require.NoError(t, json.Unmarshal(dat, &managed))
	require.Len(t, managed, 2)
	require.Equal(t, "check_choria", managed[0].Name)
	require.Equal(t, "http://plugins.choria.local/check_choria-1.0.0.tar.gz", managed[0].Source)
	require.Equal(t, "requests", managed[1].Name)

	// packing again updates entries rather than adding duplicates
	code, _, errOut := cmd(t, "check-choria", "--out-dir", filepath.Join(a, "htdocs"), "--base-url", "http://other.example.net", "--manifest", filepath.Join(a, "plugins.json"))
	require.Equal(t, 0, code, errOut)
	dat, err = os.ReadFile(filepath.Join(a, "plugins.json"))
	require.NoError(t, err)
	managed = nil
	require.NoError(t, json.Unmarshal(dat, &managed))
	require.Len(t, managed, 2)
	require.Equal(t, "http://other.example.net/check_choria-1.0.0.tar.gz", managed[0].Source)
}

func TestSign(t *testing.T) {
	dir := pack(t)
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 42
	seedFile := filepath.Join(dir, "plugin-signer.seed")
	require.NoError(t, os.WriteFile(seedFile, []byte(hex.EncodeToString(seed)), 0o600))
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	manifest := filepath.Join(dir, "plugins.json")

	specFile := filepath.Join(dir, "spec.json")
	mdFile := filepath.Join(dir, "machine_data.json")
	code, _, errOut := cmd(t, "sign", manifest, seedFile, "--output", specFile, "--machine-data", mdFile)
	require.Equal(t, 0, code, errOut)

	// byte for byte what choria machine plugins pack --output writes
	mdat, err := os.ReadFile(manifest)
	require.NoError(t, err)
	expected, err := (&pluginswatcher.Specification{Plugins: base64.StdEncoding.EncodeToString(mdat)}).Encode(seedFile)
	require.NoError(t, err)
	spec, err := os.ReadFile(specFile)
	require.NoError(t, err)
	require.Equal(t, string(expected), string(spec))

	var s pluginswatcher.Specification
	require.NoError(t, json.Unmarshal(spec, &s))
	ok, err := s.VerifySignature(pub)
	require.NoError(t, err)
	require.True(t, ok)

	md, err := os.ReadFile(mdFile)
	require.NoError(t, err)
	require.Equal(t, `{"spec":`+string(spec)+`}`, string(md))

	// standard output, as pack without --output prints it
	code, out, _ := cmd(t, "sign", manifest, seedFile)
	require.Equal(t, 0, code)
	require.Equal(t, string(spec)+"\n", out)

	bad := filepath.Join(dir, "bad.seed")
	require.NoError(t, os.WriteFile(bad, []byte("nope"), 0o600))
	code, _, errOut = cmd(t, "sign", manifest, bad)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "seed is not hex encoded")
}

func TestMachines(t *testing.T) {
	dir := t.TempDir()
	gather := filepath.Join(dir, "choria-facts")
	require.NoError(t, os.WriteFile(gather, []byte("#!/bin/sh\n"), 0o700))

	facts := filepath.Join(dir, "machine", "facts")
	code, _, errOut := cmd(t, "facts-machine", "--dir", facts, "--gather", gather, "--interval", "30s", "--facts-file", "/srv/lab/n1/facts.json")
	require.Equal(t, 0, code, errOut)
	st, err := os.Stat(filepath.Join(facts, "gather"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	m, _ := machinetest.Load(t, facts)
	for _, w := range m.WatcherDefs {
		if w.Name == "gather_facts" {
			require.Equal(t, "30s", w.Interval)
			require.Equal(t, "./gather --output /srv/lab/n1/facts.json", w.Properties["command"])
		}
	}

	code, _, errOut = cmd(t, "facts-machine", "--dir", facts, "--interval", "1500ms")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "whole number of seconds")

	md := filepath.Join(dir, "md.json")
	require.NoError(t, os.WriteFile(md, []byte(`{"spec":{"plugins":"W10="}}`), 0o600))
	ea := filepath.Join(dir, "machine", "external_agents")
	code, _, errOut = cmd(t, "external-agents-machine", "--dir", ea, "--plugins-directory", "/srv/lab/n1/plugins/mcollective/agent", "--machine-data", md)
	require.Equal(t, 0, code, errOut)
	require.FileExists(t, filepath.Join(ea, "machine_data.json"))
	m, _ = machinetest.Load(t, ea)
	require.Equal(t, "/srv/lab/n1/plugins/mcollective/agent", m.WatcherDefs[0].Properties["plugins_directory"])
	data, ok := m.DataGet("spec")
	require.True(t, ok, "machine data is loaded by the machine")
	require.Equal(t, map[string]any{"plugins": "W10="}, data)
	require.Equal(t, "6m", m.WatcherDefs[0].Interval, "the shipped interval without --interval")

	code, _, errOut = cmd(t, "external-agents-machine", "--dir", ea, "--interval", "20s", "--manage-interval", "15s")
	require.Equal(t, 0, code, errOut)
	m, _ = machinetest.Load(t, ea)
	require.Equal(t, "20s", m.WatcherDefs[0].Interval)
	require.Equal(t, "15s", m.WatcherDefs[0].Properties["plugin_manage_interval"])

	cc := filepath.Join(dir, "plugins", "check_choria")
	code, _, errOut = cmd(t, "check-choria-machine", "--dir", cc, "--interval", "30s")
	require.Equal(t, 0, code, errOut)
	m, _ = machinetest.Load(t, cc)
	require.Equal(t, "check_choria", m.MachineName)
	require.Equal(t, "30s", m.WatcherDefs[0].Interval)

	code, _, errOut = cmd(t, "check-choria-machine", "--dir", cc, "--interval", "2500ms")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "whole number of seconds")
}

func TestUsage(t *testing.T) {
	code, _, errOut := cmd(t, "requests")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "required flags")

	code, _, _ = cmd(t)
	require.NotEqual(t, 0, code)

	code, _, errOut = cmd(t, "--help")
	require.Equal(t, 0, code)
	require.Equal(t, 1, strings.Count(errOut, "usage: choria-plugin-pack"))

	code, _, errOut = cmd(t, "check-choria", "--out-dir", t.TempDir(), "--base-url", "ftp://x")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "must be an http or https URL")
}
