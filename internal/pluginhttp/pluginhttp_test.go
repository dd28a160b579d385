package pluginhttp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandler(t *testing.T) {
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	require.NoError(t, os.MkdirAll(filepath.Join(docroot, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(docroot, "agent.tar.gz"), []byte("archive"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(docroot, ".secret"), []byte("hidden"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(docroot, "sub", ".htpasswd"), []byte("hidden"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(base, "outside"), []byte("outside the docroot"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(base, "outside"), filepath.Join(docroot, "escape")))
	require.NoError(t, os.Symlink("../outside", filepath.Join(docroot, "relative-escape")))
	require.NoError(t, os.Symlink("agent.tar.gz", filepath.Join(docroot, "inside")))

	root, err := os.OpenRoot(docroot)
	require.NoError(t, err)
	defer root.Close()
	srv := httptest.NewServer(Handler(root))
	defer srv.Close()

	get := func(path string) (int, string) {
		res, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}

	code, body := get("/")
	assert.Equal(t, http.StatusOK, code, "the tour's requests agent step fetches /")
	assert.Contains(t, body, "agent.tar.gz")
	assert.NotContains(t, body, ".secret")

	code, body = get("/agent.tar.gz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "archive", body)

	code, _ = get("/inside")
	assert.Equal(t, http.StatusOK, code, "a link within the docroot is served")

	for _, p := range []string{"/.secret", "/sub/.htpasswd", "/escape", "/relative-escape", "/../outside", "/%2e%2e/outside"} {
		code, body = get(p)
		assert.NotEqual(t, http.StatusOK, code, p)
		assert.NotContains(t, body, "outside the docroot", p)
		assert.NotContains(t, body, "hidden", p)
	}
	_, body = get("/sub/")
	assert.NotContains(t, body, ".htpasswd")
}
