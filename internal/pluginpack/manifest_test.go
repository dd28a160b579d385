package pluginpack

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/choria-io/go-choria/aagent/watchers/pluginswatcher"
	"github.com/stretchr/testify/require"
)

// testKey makes a seed file the way `choria jwt keys` does: the hex seed,
// no newline.
func testKey(t *testing.T, seed byte) (string, ed25519.PrivateKey) {
	t.Helper()

	raw := make([]byte, ed25519.SeedSize)
	for i := range raw {
		raw[i] = seed + byte(i)
	}
	key := ed25519.NewKeyFromSeed(raw)

	path := filepath.Join(t.TempDir(), "plugin-signer.seed")
	require.NoError(t, os.WriteFile(path, []byte(hex.EncodeToString(raw)), 0o600))

	return path, key
}

func sampleManifest(t *testing.T) []byte {
	t.Helper()

	a, err := Build(samplePlugin())
	require.NoError(t, err)
	e, err := a.Entry("http://plugins.example.net/sample-1.0.0.tar.gz")
	require.NoError(t, err)
	m, err := EncodeManifest([]Entry{e})
	require.NoError(t, err)

	return m
}

func TestManifestIsWhatThePluginsWatcherReads(t *testing.T) {
	a, err := Build(samplePlugin())
	require.NoError(t, err)
	e, err := a.Entry("http://plugins.example.net/sample-1.0.0.tar.gz")
	require.NoError(t, err)
	other := Entry{Name: "another", Source: "https://x.example.net/a.tgz", Verify: SumsFile, VerifyChecksum: "aa", Checksum: "bb"}

	m, err := EncodeManifest([]Entry{e, other})
	require.NoError(t, err)

	var managed []*pluginswatcher.ManagedPlugin
	require.NoError(t, json.Unmarshal(m, &managed))
	require.Len(t, managed, 2)
	require.Equal(t, "another", managed[0].Name, "sorted by name")
	require.Equal(t, "sample", managed[1].Name)
	require.Equal(t, "http://plugins.example.net/sample-1.0.0.tar.gz", managed[1].Source)
	require.Equal(t, a.Checksum, managed[1].ArchiveChecksum)
	require.Equal(t, a.SumsChecksum, managed[1].ContentChecksumsChecksum)

	// the same layout `choria machine plugins add` writes, plus "verify"
	var generic []map[string]any
	require.NoError(t, json.Unmarshal(m, &generic))
	require.Equal(t, map[string]any{
		"name": "sample", "source": "http://plugins.example.net/sample-1.0.0.tar.gz", "verify": "SHA256SUMS",
		"verify_checksum": a.SumsChecksum, "checksum": a.Checksum,
	}, generic[1])
	require.Contains(t, string(m), "[\n  {\n    \"name\": \"another\",")

	parsed, err := ParseManifest(m)
	require.NoError(t, err)
	require.Equal(t, []Entry{other, e}, parsed)

	_, err = EncodeManifest([]Entry{e, e})
	require.ErrorContains(t, err, "listed twice")
	_, err = EncodeManifest([]Entry{{Name: "x"}})
	require.ErrorContains(t, err, "needs name, source")
	empty, err := EncodeManifest(nil)
	require.NoError(t, err)
	require.Equal(t, "[]", string(empty))

	_, err = a.Entry("ftp://x/y")
	require.ErrorContains(t, err, "must be an http or https URL")
}

func TestUpsert(t *testing.T) {
	a := Entry{Name: "a", Source: "1"}
	b := Entry{Name: "b", Source: "1"}
	res := Upsert([]Entry{a, b}, Entry{Name: "a", Source: "2"})
	require.Equal(t, []Entry{{Name: "a", Source: "2"}, b}, res)
	res = Upsert(res, Entry{Name: "c"})
	require.Len(t, res, 3)
}

// TestSignMatchesChoriaPack compares with go-choria's own encoder, the code
// behind `choria machine plugins pack`, byte for byte.
func TestSignMatchesChoriaPack(t *testing.T) {
	seedFile, key := testKey(t, 1)
	manifest := sampleManifest(t)

	ours, err := Sign(manifest, key)
	require.NoError(t, err)

	spec := &pluginswatcher.Specification{Plugins: base64.StdEncoding.EncodeToString(manifest)}
	theirs, err := spec.Encode(seedFile)
	require.NoError(t, err)
	require.Equal(t, string(theirs), string(ours))

	loaded, err := LoadSeedFile(seedFile)
	require.NoError(t, err)
	require.Equal(t, key, loaded)
}

func TestSignatureVerifiesWithChoria(t *testing.T) {
	_, key := testKey(t, 1)
	_, otherKey := testKey(t, 100)
	pub := key.Public().(ed25519.PublicKey)
	manifest := sampleManifest(t)

	signed, err := Sign(manifest, key)
	require.NoError(t, err)

	verify := func(dat []byte) bool {
		t.Helper()
		var spec pluginswatcher.Specification
		require.NoError(t, json.Unmarshal(dat, &spec))
		ok, err := spec.VerifySignature(pub)
		if err != nil {
			return false
		}
		return ok
	}
	require.True(t, verify(signed))

	var spec Specification
	require.NoError(t, json.Unmarshal(signed, &spec))
	decoded, err := base64.StdEncoding.DecodeString(spec.Plugins)
	require.NoError(t, err)
	require.Equal(t, manifest, decoded, "the manifest travels unchanged")

	t.Run("tampered manifest", func(t *testing.T) {
		evil := []byte(string(manifest[:len(manifest)-3]) + "x\"}]")
		tampered := spec
		tampered.Plugins = base64.StdEncoding.EncodeToString(evil)
		j, _ := json.Marshal(tampered)
		require.False(t, verify(j))
	})

	t.Run("tampered signature", func(t *testing.T) {
		sig, _ := hex.DecodeString(spec.Signature)
		sig[0] ^= 1
		tampered := spec
		tampered.Signature = hex.EncodeToString(sig)
		j, _ := json.Marshal(tampered)
		require.False(t, verify(j))
	})

	t.Run("other signer", func(t *testing.T) {
		j, err := Sign(manifest, otherKey)
		require.NoError(t, err)
		require.False(t, verify(j))
	})

	t.Run("unsigned", func(t *testing.T) {
		j, _ := json.Marshal(Specification{Plugins: spec.Plugins})
		require.False(t, verify(j))
	})

	_, err = Sign([]byte("not json"), key)
	require.ErrorContains(t, err, "invalid plugins manifest")
	_, err = Sign(manifest, key[:10])
	require.ErrorContains(t, err, "invalid ed25519 private key size")
}

func TestMachineData(t *testing.T) {
	_, key := testKey(t, 1)
	signed, err := Sign(sampleManifest(t), key)
	require.NoError(t, err)

	md, err := MachineData(signed, "spec")
	require.NoError(t, err)

	var data map[string]pluginswatcher.Specification
	require.NoError(t, json.Unmarshal(md, &data))
	var spec pluginswatcher.Specification
	require.NoError(t, json.Unmarshal(signed, &spec))
	require.Equal(t, map[string]pluginswatcher.Specification{"spec": spec}, data)

	_, err = MachineData(signed, "")
	require.ErrorContains(t, err, "data item name is required")
	_, err = MachineData([]byte(`{}`), "spec")
	require.ErrorContains(t, err, "invalid plugins specification")
}

func TestSeeds(t *testing.T) {
	_, key := testKey(t, 7)
	hexSeed := hex.EncodeToString(key.Seed())

	dir := t.TempDir()
	withNewline := filepath.Join(dir, "nl.seed")
	require.NoError(t, os.WriteFile(withNewline, []byte(hexSeed+"\n"), 0o600))
	got, err := LoadSeedFile(withNewline)
	require.NoError(t, err)
	require.Equal(t, key, got)

	_, err = SeedFromHex("zz")
	require.ErrorContains(t, err, "not hex encoded")
	_, err = SeedFromHex("abcd")
	require.ErrorContains(t, err, "seed has 2 bytes, expected 32")
	_, err = LoadSeedFile(filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "reading seed file")
}
