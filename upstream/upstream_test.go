package upstream

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoad(t *testing.T) {
	p, err := Load()
	require.NoError(t, err)
	assert.Equal(t, []string{"aaasvc", "choria", "choria-provisioner", "stream-replicator", "nats", "nats-server"}, p.Programs())
	c := p.Sources["choria"]
	assert.Contains(t, c.LinkFlags(), "-X 'github.com/choria-io/go-choria/build.Version=0.30.2'")
	assert.Contains(t, c.LinkFlags(), "-X 'github.com/choria-io/go-choria/build.SHA=58e80bab58a53d38576238baa011123d5f9eff59'")
	for _, name := range p.Programs() {
		for _, f := range p.Sources[name].LinkFlags() {
			assert.NotContains(t, f, "@", "%s: %s", name, f)
		}
	}
	assert.Equal(t, "v0.30.2", c.Ref())
	assert.Equal(t, "285c0ed", p.Sources["aaasvc"].Ref())
	assert.Equal(t, "nats-server", p.Binary("nats-server"))
}

func TestKeyFollowsThePin(t *testing.T) {
	p, err := Load()
	require.NoError(t, err)
	k1, err := p.Key("choria")
	require.NoError(t, err)
	again, err := p.Key("choria")
	require.NoError(t, err)
	assert.Equal(t, k1, again)

	proxy := p.ModuleProxies["appbuilder"]
	proxy.Sum = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	p.ModuleProxies["appbuilder"] = proxy
	k2, err := p.Key("choria")
	require.NoError(t, err)
	assert.NotEqual(t, k1, k2, "a proxy the build uses is part of its key")

	_, err = p.Key("nonesuch")
	assert.ErrorContains(t, err, `no upstream program "nonesuch"`)
}

// TestParseRefuses changes one field of the real pins at a time.
func TestParseRefuses(t *testing.T) {
	cases := map[string]struct {
		edit func(m map[string]any)
		want string
	}{
		"unknown field": {func(m map[string]any) { src(m, "choria")["vendor_hash"] = "x" }, `unknown field "vendor_hash"`},
		"short hash":    {func(m map[string]any) { src(m, "aaasvc")["hash"] = "sha256-abc=" }, "sources.aaasvc: hash"},
		"vendorHash":    {func(m map[string]any) { src(m, "aaasvc")["vendorHash"] = "" }, "sources.aaasvc: vendorHash"},
		"short rev":     {func(m map[string]any) { src(m, "choria")["rev"] = "58e80ba" }, "not a full commit id"},
		"placeholder":   {func(m map[string]any) { src(m, "choria")["ldflags"] = []any{"-X a.b=@tag@"} }, "only @version@ and @rev@"},
		"proxy":         {func(m map[string]any) { src(m, "choria")["moduleProxies"] = []any{"nope"} }, `module proxy "nope"`},
		"same binary":   {func(m map[string]any) { src(m, "aaasvc")["binary"] = "choria" }, "both install choria"},
		"sum": {func(m map[string]any) {
			m["moduleProxies"].(map[string]any)["appbuilder"].(map[string]any)["sum"] = "sha256-x"
		}, "moduleProxies.appbuilder: sum"},
		"module version": {func(m map[string]any) {
			m["modules"].(map[string]any)["nats"].(map[string]any)["version"] = "0.5.0"
		}, "modules.nats"},
		"glob": {func(m map[string]any) {
			src(m, "choria")["generate"].(map[string]any)["remove"] = []any{"../x"}
		}, "file name pattern"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var m map[string]any
			require.NoError(t, json.Unmarshal(embedded, &m))
			c.edit(m)
			b, err := json.Marshal(m)
			require.NoError(t, err)
			_, err = Parse(b)
			assert.ErrorContains(t, err, c.want)
		})
	}
}

func src(m map[string]any, name string) map[string]any {
	return m["sources"].(map[string]any)[name].(map[string]any)
}
