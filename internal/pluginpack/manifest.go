package pluginpack

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
)

// Entry is one plugin in the manifest. The JSON names are those of
// go-choria's pluginswatcher.ManagedPlugin; "verify" is not read by v0.30.2
// (its machine template hard codes SHA256SUMS) but the reference manifest
// carries it, so it is kept for readers of the manifest.
type Entry struct {
	Name           string `json:"name"`
	Source         string `json:"source"`
	Verify         string `json:"verify"`
	VerifyChecksum string `json:"verify_checksum"`
	Checksum       string `json:"checksum"`
}

// Entry returns the manifest entry for the archive served at source.
func (a *Archive) Entry(source string) (Entry, error) {
	u, err := url.Parse(source)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Entry{}, fmt.Errorf("invalid source URL %q for plugin %s: must be an http or https URL", source, a.Name)
	}

	return Entry{
		Name:           a.Name,
		Source:         source,
		Verify:         SumsFile,
		VerifyChecksum: a.SumsChecksum,
		Checksum:       a.Checksum,
	}, nil
}

// ParseManifest reads a manifest as written by EncodeManifest or
// `choria machine plugins add`.
func ParseManifest(dat []byte) ([]Entry, error) {
	var entries []Entry
	err := json.Unmarshal(dat, &entries)
	if err != nil {
		return nil, fmt.Errorf("invalid plugins manifest: %w", err)
	}
	return entries, nil
}

// EncodeManifest renders the manifest the way `choria machine plugins add`
// does (two space indented JSON, no trailing newline), sorted by name so it does not depend on
// the order plugins were added.
func EncodeManifest(entries []Entry) ([]byte, error) {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })

	for i, e := range sorted {
		if e.Name == "" || e.Source == "" || e.Checksum == "" || e.VerifyChecksum == "" {
			return nil, fmt.Errorf("manifest entry %d (%q) needs name, source, checksum and verify_checksum", i, e.Name)
		}
		if i > 0 && sorted[i-1].Name == e.Name {
			return nil, fmt.Errorf("plugin %s is listed twice", e.Name)
		}
	}
	if sorted == nil {
		sorted = []Entry{}
	}

	dat, err := json.MarshalIndent(sorted, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}

	return dat, nil
}

// Upsert replaces the entry of the same name or adds it, like
// `choria machine plugins add` does.
func Upsert(entries []Entry, e Entry) []Entry {
	res := slices.Clone(entries)
	for i := range res {
		if res[i].Name == e.Name {
			res[i] = e
			return res
		}
	}
	return append(res, e)
}

// Specification is the signed form of the manifest, field for field the
// JSON of go-choria's pluginswatcher.Specification.
type Specification struct {
	Plugins   string `json:"plugins"`
	Signature string `json:"signature,omitempty"`
}

// Sign wraps the manifest bytes as `choria machine plugins pack` does: the
// file is base64 encoded unchanged and the ed25519 signature is made over
// that base64 text, hex encoded.
func Sign(manifest []byte, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("invalid ed25519 private key size %d", len(key))
	}

	_, err := ParseManifest(manifest)
	if err != nil {
		return nil, err
	}

	spec := Specification{Plugins: base64.StdEncoding.EncodeToString(manifest)}
	spec.Signature = hex.EncodeToString(ed25519.Sign(key, []byte(spec.Plugins)))

	dat, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encoding specification: %w", err)
	}

	return dat, nil
}

// MachineData renders a machine_data.json holding the specification under
// dataItem, how the external agents machine receives its plugins without a
// key-value bucket.
func MachineData(spec []byte, dataItem string) ([]byte, error) {
	if dataItem == "" {
		return nil, fmt.Errorf("data item name is required")
	}

	var s Specification
	err := json.Unmarshal(spec, &s)
	if err != nil || s.Plugins == "" {
		return nil, fmt.Errorf("invalid plugins specification: %v", err)
	}

	dat, err := json.Marshal(map[string]Specification{dataItem: s})
	if err != nil {
		return nil, fmt.Errorf("encoding machine data: %w", err)
	}

	return dat, nil
}

// SeedFromHex turns a hex encoded ed25519 seed, the content of a seed file
// `choria jwt keys` writes, into a private key.
func SeedFromHex(s string) (ed25519.PrivateKey, error) {
	seed, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("seed is not hex encoded: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("seed has %d bytes, expected %d", len(seed), ed25519.SeedSize)
	}

	return ed25519.NewKeyFromSeed(seed), nil
}

// LoadSeedFile reads a hex seed file. Surrounding white space is accepted,
// go-choria's own reader would reject a trailing newline.
func LoadSeedFile(path string) (ed25519.PrivateKey, error) {
	dat, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading seed file: %w", err)
	}

	key, err := SeedFromHex(string(dat))
	if err != nil {
		return nil, fmt.Errorf("seed file %s: %w", path, err)
	}

	return key, nil
}
