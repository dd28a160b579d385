package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCommand(t *testing.T) {
	bin := testenv.BuildCommand(t, "./cmd/choria-bootstrap")
	dir := filepath.Join(t.TempDir(), "creds")

	t.Run("first run prints what it made and no secret", func(t *testing.T) {
		out, err := exec.Command(bin, "--out", dir).CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "created   issuer/issuer.seed")
		assert.Contains(t, string(out), filepath.Join(dir, "operator/user-admin.password"))
		require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, ".public") || strings.HasSuffix(p, ".crt") {
				return err
			}
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			for _, line := range strings.Split(string(b), "\n") {
				if len(line) >= 12 && !strings.HasPrefix(line, "#") {
					// every secret value is a whole line or follows "= " / ": "
					for _, v := range []string{line, after(line, "= "), after(line, ": ")} {
						if len(v) >= 12 {
							assert.NotContains(t, string(out), v, "output reveals content of %s", p)
						}
					}
				}
			}
			return nil
		}))
	})

	t.Run("second run changes nothing and says so", func(t *testing.T) {
		out, err := exec.Command(bin, "--out", dir).CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "kept all 39 files, changed nothing")
	})

	t.Run("--brokers makes a cluster's brokers and keeps every key", func(t *testing.T) {
		out, err := exec.Command(bin, "--out", dir, "--brokers", "3").CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "created   broker3/broker.jwt")
		assert.Contains(t, string(out), "replaced  client/client.conf")
		assert.NotContains(t, string(out), "replaced  broker/broker.seed")
		out, err = exec.Command(bin, "--out", dir, "--brokers", "4").CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "brokers.count 4: brokers.hosts lists only 3 brokers")
	})

	t.Run("bad topology fails naming the file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "broken.json")
		require.NoError(t, os.WriteFile(f, []byte(`{"domain": "choria.local",`), 0o600))
		target := filepath.Join(t.TempDir(), "never")
		out, err := exec.Command(bin, "--out", target, "--topology", f).CombinedOutput()
		require.Error(t, err)
		assert.Equal(t, 1, err.(*exec.ExitError).ExitCode())
		assert.Contains(t, string(out), "broken.json")
		_, serr := os.Stat(target)
		assert.True(t, os.IsNotExist(serr), "nothing may be created for a bad topology")
	})

	t.Run("unknown rotation role", func(t *testing.T) {
		out, err := exec.Command(bin, "--out", dir, "--rotate", "webserver").CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), `unknown role "webserver"`)
	})

	t.Run("out is required", func(t *testing.T) {
		out, err := exec.Command(bin).CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "--out")
	})
}

func after(s, sep string) string {
	if _, v, ok := strings.Cut(s, sep); ok {
		return strings.Trim(v, `",`)
	}
	return ""
}
