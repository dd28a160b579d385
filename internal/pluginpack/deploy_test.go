package pluginpack

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/machines"
	"github.com/reproducible-choria/deployment/machines/machinetest"
)

// fileServer serves artefacts the way the plugins web host does.
type fileServer struct {
	mu    sync.Mutex
	files map[string][]byte
}

func (f *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	dat, ok := f.files[r.URL.Path]
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(dat)
}

func (f *fileServer) put(path string, dat []byte) {
	f.mu.Lock()
	f.files[path] = dat
	f.mu.Unlock()
}

// node is a server's machine store and plugin directory in a temp dir.
type node struct {
	machines string
	plugins  string
	pub      ed25519.PublicKey
	srv      *httptest.Server
	files    *fileServer
}

func newNode(t *testing.T, key ed25519.PrivateKey) *node {
	t.Helper()

	root := t.TempDir()
	n := &node{
		machines: filepath.Join(root, "machine"),
		plugins:  filepath.Join(root, "plugins", "mcollective", "agent"),
		pub:      key.Public().(ed25519.PublicKey),
		files:    &fileServer{files: map[string][]byte{}},
	}
	require.NoError(t, os.MkdirAll(n.machines, 0o755))
	require.NoError(t, os.MkdirAll(n.plugins, 0o755))
	n.srv = httptest.NewServer(n.files)
	t.Cleanup(n.srv.Close)

	return n
}

// manage runs the plugins watcher (our external agents machine) with the
// given machine data until it deploys a manager machine or rejects the
// specification, returning the log line that decided it.
func (n *node) manage(t *testing.T, pluginsDir string, machineData []byte) (string, *machinetest.Recorder) {
	t.Helper()

	def, err := machines.RenderExternalAgents(machines.ExternalAgentsOptions{PluginsDirectory: pluginsDir})
	require.NoError(t, err)
	dir := filepath.Join(n.machines, "external_agents")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "machine.yaml"), def, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "machine_data.json"), machineData, 0o644))

	m, rec := machinetest.Load(t, dir)
	// what plugin.choria.machine.signing_key configures on a server
	m.SetSignerKey(hex.EncodeToString(n.pub))
	machinetest.Start(t, m)

	line := rec.WaitFor(t, 10*time.Second, "Deploying plugin", "did not verify", "No signature found", "Managing plugins failed")
	return line, rec
}

// download runs the manager machine the plugins watcher wrote, whose archive
// watcher fetches, verifies and extracts the plugin.
func (n *node) download(t *testing.T, name string) string {
	t.Helper()

	// the watcher logs before it writes the machine
	dir := filepath.Join(n.machines, "eam_"+name)
	require.Eventually(t, func() bool {
		dat, err := os.ReadFile(filepath.Join(dir, "machine.yaml"))
		return err == nil && strings.Contains(string(dat), "verify_checksum")
	}, 5*time.Second, 10*time.Millisecond, "no manager machine written")

	m, rec := machinetest.Load(t, dir)
	machinetest.Start(t, m)

	return rec.WaitFor(t, 15*time.Second, "was deployed successfully", "Managing archive failed", "verify failed")
}

func signedData(t *testing.T, entries []Entry, key ed25519.PrivateKey) []byte {
	t.Helper()

	manifest, err := EncodeManifest(entries)
	require.NoError(t, err)
	spec, err := Sign(manifest, key)
	require.NoError(t, err)
	md, err := MachineData(spec, "spec")
	require.NoError(t, err)

	return md
}

func fakeAgentBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "requests")
	// the packager only reads the bytes; platform given explicitly
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755))
	return path
}

func requestsArchive(t *testing.T) (*Archive, string) {
	t.Helper()

	p, file, err := RequestsAgent(RequestsOptions{Binary: fakeAgentBinary(t), OS: "linux", Arch: "amd64"})
	require.NoError(t, err)
	require.Equal(t, "requests-agent_0.0.1_linux_amd64.tar.gz", file)
	a, err := Build(p)
	require.NoError(t, err)

	return a, file
}

// TestRequestsAgentDeploys runs the whole path a server takes with
// go-choria's own watchers: signed specification, manager machine, archive
// download, checksum and SHA256SUMS verification, extraction.
func TestRequestsAgentDeploys(t *testing.T) {
	_, key := testKey(t, 1)
	n := newNode(t, key)

	a, file := requestsArchive(t)
	n.files.put("/"+file, a.Tarball)
	e, err := a.Entry(n.srv.URL + "/" + file)
	require.NoError(t, err)

	line, _ := n.manage(t, n.plugins, signedData(t, []Entry{e}, key))
	require.Contains(t, line, "Deploying plugin requests")

	line = n.download(t, "requests")
	require.Contains(t, line, "was deployed successfully to requests")

	// where go-choria's external agent provider looks: <dir>/requests/requests.json
	// with the executable requests beside it
	dir := filepath.Join(n.plugins, "requests")
	ddl, err := os.ReadFile(filepath.Join(dir, "requests.json"))
	require.NoError(t, err)
	require.Contains(t, string(ddl), `"provider": "external"`)
	st, err := os.Stat(filepath.Join(dir, "requests"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	require.FileExists(t, filepath.Join(dir, SumsFile))
}

// TestCheckChoriaDeploys deploys the Scout check into the machine store, as
// the CHORIA_PLUGINS bucket does, and loads the result as a machine.
func TestCheckChoriaDeploys(t *testing.T) {
	_, key := testKey(t, 1)
	n := newNode(t, key)

	p, file, err := CheckChoria()
	require.NoError(t, err)
	require.Equal(t, "check_choria-1.0.0.tar.gz", file)
	a, err := Build(p)
	require.NoError(t, err)
	n.files.put("/"+file, a.Tarball)
	e, err := a.Entry(n.srv.URL + "/" + file)
	require.NoError(t, err)

	line, _ := n.manage(t, n.machines, signedData(t, []Entry{e}, key))
	require.Contains(t, line, "Deploying plugin check_choria")
	require.Contains(t, n.download(t, "check_choria"), "was deployed successfully to check_choria")

	m, _ := machinetest.Load(t, filepath.Join(n.machines, "check_choria"))
	require.Equal(t, "check_choria", m.Name())
}

func TestTamperedArtefactsAreRejected(t *testing.T) {
	_, key := testKey(t, 1)
	_, otherKey := testKey(t, 100)

	good, file := requestsArchive(t)
	entry := func(n *node, a *Archive) Entry {
		e, err := a.Entry(n.srv.URL + "/" + file)
		require.NoError(t, err)
		return e
	}

	// rebuild the archive with one file changed but the original SHA256SUMS
	p, _, err := RequestsAgent(RequestsOptions{Binary: fakeAgentBinary(t), OS: "linux", Arch: "amd64"})
	require.NoError(t, err)
	files := sortedFiles(p.Files)
	files[0].Data = []byte("#!/bin/sh\necho evil\n")
	files = append(files, File{Name: SumsFile, Mode: 0o644, Data: good.Sums})
	swapped, err := writeTarball("requests", sortedFiles(files), time.Unix(0, 0))
	require.NoError(t, err)

	// an attacker who also rewrites SHA256SUMS
	p.Files[0].Data = []byte("#!/bin/sh\necho evil\n")
	resummed, err := Build(p)
	require.NoError(t, err)

	t.Run("archive changed after signing", func(t *testing.T) {
		n := newNode(t, key)
		bad := append([]byte(nil), good.Tarball...)
		bad[len(bad)/2] ^= 0xff
		n.files.put("/"+file, bad)

		line, _ := n.manage(t, n.plugins, signedData(t, []Entry{entry(n, good)}, key))
		require.Contains(t, line, "Deploying plugin requests")
		require.Contains(t, n.download(t, "requests"), "archive checksum")
		require.NoDirExists(t, filepath.Join(n.plugins, "requests"))
	})

	t.Run("content does not match SHA256SUMS", func(t *testing.T) {
		n := newNode(t, key)
		n.files.put("/"+file, swapped)
		e := entry(n, good)
		e.Checksum = sha256Hex(swapped)

		n.manage(t, n.plugins, signedData(t, []Entry{e}, key))
		line := n.download(t, "requests")
		require.Contains(t, line, "contents did not pass verification")
		require.NoDirExists(t, filepath.Join(n.plugins, "requests"))
	})

	t.Run("SHA256SUMS rewritten", func(t *testing.T) {
		n := newNode(t, key)
		n.files.put("/"+file, resummed.Tarball)
		e := entry(n, good)
		e.Checksum = resummed.Checksum

		n.manage(t, n.plugins, signedData(t, []Entry{e}, key))
		line := n.download(t, "requests")
		require.Contains(t, line, "SHA256SUMS has an invalid checksum")
		require.NoDirExists(t, filepath.Join(n.plugins, "requests"))
	})

	t.Run("manifest changed after signing", func(t *testing.T) {
		n := newNode(t, key)
		signed := signedData(t, []Entry{entry(n, good)}, key)

		var md map[string]Specification
		require.NoError(t, json.Unmarshal(signed, &md))
		evil := entry(n, resummed)
		evil.VerifyChecksum = resummed.SumsChecksum
		manifest, err := EncodeManifest([]Entry{evil})
		require.NoError(t, err)
		spec := md["spec"]
		spec.Plugins = base64.StdEncoding.EncodeToString(manifest)
		j, err := json.Marshal(map[string]Specification{"spec": spec})
		require.NoError(t, err)

		line, _ := n.manage(t, n.plugins, j)
		require.Contains(t, line, "did not verify using configured public key")
		require.NoDirExists(t, filepath.Join(n.machines, "eam_requests"))
	})

	t.Run("signed by another key", func(t *testing.T) {
		n := newNode(t, key)
		line, _ := n.manage(t, n.plugins, signedData(t, []Entry{entry(n, good)}, otherKey))
		require.Contains(t, line, "did not verify using configured public key")
		require.NoDirExists(t, filepath.Join(n.machines, "eam_requests"))
	})

	t.Run("unsigned", func(t *testing.T) {
		n := newNode(t, key)
		manifest, err := EncodeManifest([]Entry{entry(n, good)})
		require.NoError(t, err)
		j, err := json.Marshal(map[string]Specification{"spec": {Plugins: base64.StdEncoding.EncodeToString(manifest)}})
		require.NoError(t, err)

		line, _ := n.manage(t, n.plugins, j)
		require.True(t, strings.Contains(line, "No signature found"), line)
		require.NoDirExists(t, filepath.Join(n.machines, "eam_requests"))
	})
}
