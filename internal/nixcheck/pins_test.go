package nixcheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/reproducible-choria/deployment/upstream"
)

// TestPinsReachNix evaluates pkgs/pins.nix, what flake.nix hands each
// upstream package, and compares it with what the builder reads from the
// same upstream/pins.json: one pin, one place, the same link flags.
func TestPinsReachNix(t *testing.T) {
	out, err := nixEval(t, "--expr", "import ./pkgs/pins.nix { lib = import "+nixpkgsLib(t, "pkgs/pins.nix is not evaluated")+"; }")
	require.NoError(t, err, "evaluating pkgs/pins.nix")

	var nix struct {
		Sources map[string]struct {
			Version, Rev, Hash, VendorHash string
			LDFlags                        []string `json:"ldflags"`
		} `json:"sources"`
	}
	require.NoError(t, json.Unmarshal(out, &nix))
	pins, err := upstream.Load()
	require.NoError(t, err)
	require.Len(t, nix.Sources, len(pins.Sources))
	for name, s := range pins.Sources {
		n := nix.Sources[name]
		assert.Equal(t, s.LinkFlags(), n.LDFlags, "%s: ldflags", name)
		assert.Equal(t, []string{s.Version, s.Rev, s.Hash, s.VendorHash}, []string{n.Version, n.Rev, n.Hash, n.VendorHash}, name)
	}
}

// TestNoPinOutsidePinsFile: the upstream packages take every hash,
// commit and version from upstream/pins.json, so a bump cannot leave a
// stale copy behind. choria-reference (this repository) has its own
// vendorHash.
func TestNoPinOutsidePinsFile(t *testing.T) {
	literal := regexp.MustCompile(`(?m)^\s*(hash|vendorHash|rev|version|sum)\s*=\s*"`)
	files, err := filepath.Glob(filepath.Join(testenv.ModuleRoot(t), "pkgs", "*.nix"))
	require.NoError(t, err)
	allowed := map[string]map[string]bool{
		"choria-reference.nix": {"vendorHash": true, "version": true},
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			if !allowed[filepath.Base(f)][m[1]] {
				t.Errorf("pkgs/%s sets %s literally; pin it in upstream/pins.json", filepath.Base(f), m[1])
			}
		}
	}
}
