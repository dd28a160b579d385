package requests

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/choria-io/go-external/agent"
	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/stretchr/testify/require"
)

const payload = "the payload of the download\n"

func digests(s string) (string, string) {
	m := md5.Sum([]byte(s))
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(m[:]), hex.EncodeToString(h[:])
}

func downloadServer(t *testing.T) *httptest.Server {
	t.Helper()

	mux := http.NewServeMux()
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "" && r.Header.Get("X-Token") != r.URL.Query().Get("token") {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if u, p, ok := r.BasicAuth(); ok && (u != "bob" || p != "s3cret") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(payload))
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/file", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such file", http.StatusNotFound)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		// flushing before the end forces chunked encoding, no Content-Length
		for range 3 {
			w.Write([]byte(strings.Repeat("c", 50)))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte(strings.Repeat("b", 1000)))
	})
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "50")
		w.Write([]byte(strings.Repeat("s", 10)))
		w.(http.Flusher).Flush()
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})

	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	return srv
}

// requireOnly checks the directory holds exactly the named files, so no
// temporary file is left behind by a failed download.
func requireOnly(t *testing.T, dir string, names ...string) {
	t.Helper()

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var found []string
	for _, e := range entries {
		found = append(found, e.Name())
	}
	require.ElementsMatch(t, names, found)
}

func TestDownload(t *testing.T) {
	srv := downloadServer(t)
	wantMD5, wantSHA := digests(payload)

	cases := []struct {
		name  string
		input map[string]any
		mode  os.FileMode
	}{
		{name: "defaults", input: map[string]any{}, mode: 0o644},
		{name: "mode", input: map[string]any{"target_mode": "0600"}, mode: 0o600},
		{name: "three digit mode", input: map[string]any{"target_mode": "755"}, mode: 0o755},
		{name: "checksums", input: map[string]any{"md5": wantMD5, "sha256": strings.ToUpper(wantSHA)}, mode: 0o644},
		{name: "headers and query", input: map[string]any{"headers": map[string]any{"X-Token": "t1"}, "query": map[string]any{"token": "t1"}}, mode: 0o644},
		{name: "basic auth", input: map[string]any{"username": "bob", "password": "s3cret"}, mode: 0o644},
		{name: "redirect", input: map[string]any{"url": srv.URL + "/moved"}, mode: 0o644},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "file.txt")
			input := map[string]any{"url": srv.URL + "/file", "target": target}
			for k, v := range tc.input {
				input[k] = v
			}
			requireDDLValid(t, "download", input)

			rep, out := call(t, New(openPolicy(Config{})), "download", input, nil)
			requireOK(t, rep)

			require.EqualValues(t, len(payload), out["bytes"])
			require.EqualValues(t, 200, out["statuscode"])
			require.Equal(t, wantMD5, out["md5"])
			require.Equal(t, wantSHA, out["sha256"])
			require.Equal(t, "", out["error"])

			dat, err := os.ReadFile(target)
			require.NoError(t, err)
			require.Equal(t, payload, string(dat))
			st, err := os.Stat(target)
			require.NoError(t, err)
			require.Equal(t, tc.mode, st.Mode().Perm())
			requireOnly(t, dir, "file.txt")
		})
	}
}

func TestDownloadReplacesExistingFile(t *testing.T) {
	srv := downloadServer(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "file.txt")
	require.NoError(t, os.WriteFile(target, []byte("old"), 0o600))

	rep, _ := call(t, New(openPolicy(Config{})), "download", map[string]any{"url": srv.URL + "/file", "target": target, "target_mode": "0640"}, nil)
	requireOK(t, rep)

	dat, err := os.ReadFile(target)
	require.NoError(t, err)
	require.Equal(t, payload, string(dat))
	st, err := os.Stat(target)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	requireOnly(t, dir, "file.txt")
}

func TestDownloadFailures(t *testing.T) {
	srv := downloadServer(t)
	wantMD5, _ := digests(payload)
	badMD5, badSHA := digests("something else")

	cfg := openPolicy(Config{Timeout: 300 * time.Millisecond, MaxDownloadBytes: 100})

	cases := []struct {
		name   string
		input  map[string]any
		code   agent.StatusCode
		msg    string
		status int
	}{
		{name: "missing url", input: map[string]any{"url": nil}, code: agent.InvalidData, msg: "url is required"},
		{name: "malformed url", input: map[string]any{"url": "::nope"}, code: agent.InvalidData, msg: "invalid url"},
		{name: "unsupported scheme", input: map[string]any{"url": "file:///etc/passwd"}, code: agent.InvalidData, msg: "scheme must be http or https"},
		{name: "missing target", input: map[string]any{"target": nil}, code: agent.InvalidData, msg: "target is required"},
		{name: "relative target", input: map[string]any{"target": "file.txt"}, code: agent.InvalidData, msg: `target "file.txt" must be an absolute path`},
		{name: "missing directory", input: map[string]any{"target": "/nonexistent-dir-for-test/file.txt"}, code: agent.InvalidData, msg: "target directory /nonexistent-dir-for-test does not exist"},
		{name: "target is a directory", input: map[string]any{"target": "DIR/sub"}, code: agent.InvalidData, msg: "exists and is not a regular file"},
		{name: "directory is a file", input: map[string]any{"target": "DIR/file.txt/x"}, code: agent.InvalidData, msg: "is not a directory"},
		{name: "mode not octal", input: map[string]any{"target_mode": "0899"}, code: agent.InvalidData, msg: `invalid target_mode "0899"`},
		{name: "mode not a number", input: map[string]any{"target_mode": "rwx"}, code: agent.InvalidData, msg: `invalid target_mode "rwx"`},
		{name: "mode too large", input: map[string]any{"target_mode": "17777"}, code: agent.InvalidData, msg: `invalid target_mode "17777"`},
		{name: "malformed md5", input: map[string]any{"md5": "xyz"}, code: agent.InvalidData, msg: `invalid md5 checksum "xyz"`},
		{name: "short sha256", input: map[string]any{"sha256": wantMD5}, code: agent.InvalidData, msg: "invalid sha256 checksum"},
		{name: "unsupported method input", input: map[string]any{"method": "POST"}, code: agent.InvalidData, msg: `unknown field "method"`},
		{name: "md5 mismatch", input: map[string]any{"md5": badMD5}, code: agent.Aborted, msg: "md5 checksum mismatch: expected " + badMD5 + " got " + wantMD5, status: 200},
		{name: "sha256 mismatch", input: map[string]any{"md5": wantMD5, "sha256": badSHA}, code: agent.Aborted, msg: "sha256 checksum mismatch", status: 200},
		{name: "not found", input: map[string]any{"url": "SRV/missing"}, code: agent.Aborted, msg: "failed: status code 404", status: 404},
		{name: "unauthorized", input: map[string]any{"username": "bob", "password": "wrong"}, code: agent.Aborted, msg: "failed: status code 401", status: 401},
		{name: "declared too large", input: map[string]any{"url": "SRV/big"}, code: agent.Aborted, msg: "larger than the 100 bytes allowed", status: 200},
		{name: "streamed too large", input: map[string]any{"url": "SRV/chunked"}, code: agent.Aborted, msg: "larger than the 100 bytes allowed", status: 200},
		{name: "timeout mid body", input: map[string]any{"url": "SRV/stall"}, code: agent.Aborted, msg: "timed out after 300ms", status: 200},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o700))
			target := filepath.Join(dir, "file.txt")
			// an existing target must survive every failure untouched
			require.NoError(t, os.WriteFile(target, []byte("old"), 0o600))

			input := map[string]any{"url": srv.URL + "/file", "target": target}
			for k, v := range tc.input {
				if s, ok := v.(string); ok {
					v = strings.NewReplacer("SRV", srv.URL, "DIR", dir).Replace(s)
				}
				if v == nil {
					delete(input, k)
					continue
				}
				input[k] = v
			}

			require.NotPanics(t, func() {
				rep, out := call(t, New(cfg), "download", input, nil)
				requireFailed(t, rep, tc.code, tc.msg)
				require.EqualValues(t, tc.status, out["statuscode"])
				require.Equal(t, rep.StatusMessage, out["error"])
			})

			dat, err := os.ReadFile(target)
			require.NoError(t, err)
			require.Equal(t, "old", string(dat))
			requireOnly(t, dir, "file.txt", "sub")
		})
	}
}

// TestDownloadUnwritableTarget needs an unprivileged process, root writes
// everywhere; as root it reruns itself as nobody.
func TestDownloadUnwritableTarget(t *testing.T) {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "requests-readonly-")
		require.NoError(t, err)
		t.Cleanup(func() { os.RemoveAll(dir) })
		require.NoError(t, os.Chmod(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "file.txt"), []byte("old"), 0o644))

		out := testenv.RunTestAsNobody(t, "TestDownloadUnwritableTarget", "REQUESTS_READONLY_DIR="+dir)
		require.Contains(t, out, "--- PASS: TestDownloadUnwritableTarget")
		require.NotContains(t, out, "SKIP")
		requireOnly(t, dir, "file.txt")
		return
	}

	dir := os.Getenv("REQUESTS_READONLY_DIR")
	if dir == "" {
		dir = t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "file.txt"), []byte("old"), 0o644))
		require.NoError(t, os.Chmod(dir, 0o555))
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}

	srv := downloadServer(t)
	target := filepath.Join(dir, "file.txt")
	rep, out := call(t, New(openPolicy(Config{})), "download", map[string]any{"url": srv.URL + "/file", "target": target}, nil)
	requireFailed(t, rep, agent.Aborted, fmt.Sprintf("cannot write to target directory %s", dir))
	require.Contains(t, rep.StatusMessage, "permission denied")
	require.EqualValues(t, 200, out["statuscode"])

	dat, err := os.ReadFile(target)
	require.NoError(t, err)
	require.Equal(t, "old", string(dat))
}
