package nixcheck

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/topology"
)

// TestTimingsGrowAlikeInNix: nix/topology.nix scales a timing profile
// with the fleet as the Go reader does, so the NixOS lab profile renders
// the intervals the namespace lab and the bootstrapper render.
func TestTimingsGrowAlikeInNix(t *testing.T) {
	libDir := nixpkgsLib(t, "nix/topology.nix is not evaluated")
	for _, n := range []int{1, 10, 66, 200, 500} {
		for _, profile := range []string{topology.TimingsLab, topology.TimingsReference} {
			expr := fmt.Sprintf(`let lib = import %s; topo = lib.importJSON ./topology/topology.json;
in (import ./nix/topology.nix { inherit lib; } (topo // { servers = topo.servers // { count = %d; }; })).timing %q`, libDir, n, profile)
			out, err := nixEval(t, "--expr", expr)
			require.NoError(t, err, "evaluating nix/topology.nix")
			var nix topology.Timings
			require.NoError(t, json.Unmarshal(out, &nix), "%s", out)

			topo, err := topology.Default()
			require.NoError(t, err)
			topo, err = topo.WithServers(n)
			require.NoError(t, err)
			want, err := topo.Timing(profile)
			require.NoError(t, err)
			assert.Equal(t, durations(want), durations(nix), "%d servers, %s profile", n, profile)
		}
	}
}

func durations(tm topology.Timings) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, iv := range tm.Intervals() {
		out[iv.Name] = iv.Duration.Duration
	}
	return out
}
