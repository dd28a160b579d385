package requests

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/choria-io/go-external/agent"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The agent runs as root on every server and the choria user may call it:
// by default it reaches no host, reads no file and writes none.
func TestPolicyClosedByDefault(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) }))
	defer srv.Close()
	secret := filepath.Join(t.TempDir(), "shadow")
	require.NoError(t, os.WriteFile(secret, []byte("root:hash"), 0o600))
	a := New(Config{})

	rep, _ := call(t, a, "request", map[string]any{"url": srv.URL}, nil)
	assert.Equal(t, agent.InvalidData, rep.StatusCode)
	assert.Contains(t, rep.StatusMessage, "is not allowed by the agent's policy (allowed_hosts")

	rep, _ = call(t, a, "request", map[string]any{"url": srv.URL, "body_file": secret}, map[string]string{ConfigAllowedHosts: "127.0.0.1"})
	assert.Equal(t, agent.InvalidData, rep.StatusCode)
	assert.Contains(t, rep.StatusMessage, "outside the directories the agent's policy allows (body_file_directories")

	target := filepath.Join(t.TempDir(), "passwd")
	rep, _ = call(t, a, "download", map[string]any{"url": srv.URL, "target": target}, map[string]string{ConfigAllowedHosts: "127.0.0.1"})
	assert.Equal(t, agent.InvalidData, rep.StatusCode)
	assert.Contains(t, rep.StatusMessage, "outside the directories the agent's policy allows (download_directories")
	assert.NoFileExists(t, target)
}

func TestPolicyFromConfiguration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("payload")) }))
	defer srv.Close()
	dir := t.TempDir()
	body := filepath.Join(dir, "body.txt")
	require.NoError(t, os.WriteFile(body, []byte("hello"), 0o644))
	settings := map[string]string{ConfigAllowedHosts: "example.invalid, 127.0.0.1", ConfigBodyFileDirectories: dir, ConfigDownloadDirectories: dir}

	rep, out := call(t, New(Config{}), "request", map[string]any{"url": srv.URL, "method": "POST", "body_file": body}, settings)
	requireOK(t, rep)
	assert.EqualValues(t, 200, out["statuscode"])

	rep, _ = call(t, New(Config{}), "download", map[string]any{"url": srv.URL, "target": filepath.Join(dir, "got")}, settings)
	requireOK(t, rep)
	b, err := os.ReadFile(filepath.Join(dir, "got"))
	require.NoError(t, err)
	assert.Equal(t, "payload", string(b))

	_, err = Config{}.override(map[string]string{ConfigDownloadDirectories: "relative/dir"})
	assert.ErrorContains(t, err, `directory "relative/dir" must be an absolute, clean path`)
}

func TestPolicyHosts(t *testing.T) {
	c := Config{AllowedHosts: []string{"plugins.choria.local", "127.0.0.1:8080"}}
	for raw, ok := range map[string]bool{
		"http://plugins.choria.local/":        true,
		"http://PLUGINS.choria.local:81/x":    true,
		"http://127.0.0.1:8080/":              true,
		"http://127.0.0.1:8081/":              false,
		"http://plugins.choria.local.evil/":   false,
		"http://user@plugins.choria.local@x/": false,
	} {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		if ok {
			assert.NoError(t, c.allowHost(u), raw)
		} else {
			assert.Error(t, c.allowHost(u), raw)
		}
	}
}

// TestPolicyRedirects: a redirect cannot take a request where the caller
// could not send it.
func TestPolicyRedirects(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("elsewhere")) }))
	defer elsewhere.Close()
	other, _ := url.Parse(elsewhere.URL)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:"+other.Port()+"/", http.StatusFound)
	}))
	defer redirect.Close()

	rep, _ := call(t, New(Config{}), "request", map[string]any{"url": redirect.URL}, map[string]string{ConfigAllowedHosts: "127.0.0.1"})
	assert.NotEqual(t, agent.OK, rep.StatusCode)
	assert.Contains(t, rep.StatusMessage, "host localhost:"+other.Port()+" is not allowed")
}

// TestPolicyPaths: no special mode bits, no .., no link out of an allowed
// directory, for reading a body or writing a download.
func TestPolicyPaths(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("payload")) }))
	defer srv.Close()
	allowed, outside := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(allowed, "linkdir")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(allowed, "leak")))
	require.NoError(t, os.Mkdir(filepath.Join(allowed, "sub"), 0o755))
	settings := map[string]string{ConfigAllowedHosts: "127.0.0.1", ConfigBodyFileDirectories: allowed, ConfigDownloadDirectories: allowed}

	for _, tc := range []struct {
		input map[string]any
		want  string
	}{
		{map[string]any{"target": filepath.Join(allowed, "x"), "target_mode": "4755"}, "setuid, setgid or sticky bits"},
		{map[string]any{"target": filepath.Join(allowed, "x"), "target_mode": "1777"}, "setuid, setgid or sticky bits"},
		{map[string]any{"target": allowed + "/sub/../x"}, "must be a clean path without .."},
		{map[string]any{"target": filepath.Join(allowed, "linkdir", "x")}, "is a symbolic link"},
		{map[string]any{"target": filepath.Join(allowed, "leak")}, "exists and is not a regular file"},
	} {
		input := map[string]any{"url": srv.URL}
		for k, v := range tc.input {
			input[k] = v
		}
		rep, _ := call(t, New(Config{}), "download", input, settings)
		assert.NotEqual(t, agent.OK, rep.StatusCode, "%v", tc.input)
		assert.Contains(t, rep.StatusMessage, tc.want, "%v", tc.input)
	}
	_, err := os.Stat(filepath.Join(outside, "x"))
	assert.True(t, os.IsNotExist(err), "nothing was written outside")

	rep, _ := call(t, New(Config{}), "request", map[string]any{"url": srv.URL, "method": "POST", "body_file": filepath.Join(allowed, "leak")}, settings)
	assert.NotEqual(t, agent.OK, rep.StatusCode)
	assert.True(t, strings.Contains(rep.StatusMessage, "escapes") || strings.Contains(rep.StatusMessage, "cannot read body_file"), rep.StatusMessage)
}
