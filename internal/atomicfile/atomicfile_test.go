package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret.seed")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o644))

	require.NoError(t, Write(p, []byte("new"), 0o600))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file is left")

	err = Write(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600)
	assert.ErrorContains(t, err, "creating temporary file in "+filepath.Join(dir, "missing"))
}

func TestIsTemp(t *testing.T) {
	assert.True(t, IsTemp(".broker.seed.tmp-123456"))
	assert.False(t, IsTemp("broker.seed"))
	assert.False(t, IsTemp(".hidden"))
}
