// Package pluginpack builds the plugin archives and the signed plugins
// manifest that Choria servers deploy at run time, in the formats go-choria
// v0.30.2 reads:
//
//   - the archive is a gzipped tar holding one directory named after the
//     plugin with a SHA256SUMS file inside, as the archive watcher
//     (aagent/watchers/archivewatcher) extracts and verifies it;
//   - the manifest is the JSON list of plugins the plugins watcher
//     (aagent/watchers/pluginswatcher ManagedPlugin) reads;
//   - the specification wraps the manifest base64 encoded with a hex ed25519
//     signature, as `choria machine plugins pack` writes it
//     (pluginswatcher.Specification.Encode).
//
// Archives are byte-for-byte reproducible so the lab, the Nix build and the
// walkthrough all produce artefacts with the same checksums.
package pluginpack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"time"
)

// SumsFile is the name of the checksums file inside every archive, the
// value of the manifest's "verify" field.
const SumsFile = "SHA256SUMS"

// File is one file of a plugin.
type File struct {
	// Name inside the plugin directory, plugins are flat.
	Name string
	// Mode is 0644 or 0755, other bits are ignored.
	Mode fs.FileMode
	Data []byte
}

// Plugin is the content of one archive.
type Plugin struct {
	// Name is the plugin name, the directory the archive creates and the
	// name in the manifest.
	Name string
	// Files are the plugin's files, SHA256SUMS is added.
	Files []File
	// ModTime overrides the fixed modification time of the entries.
	ModTime time.Time
}

// Archive is a built plugin archive.
type Archive struct {
	Name string
	// Tarball is the gzipped tar.
	Tarball []byte
	// Checksum is the hex SHA256 of Tarball, the manifest "checksum".
	Checksum string
	// Sums is the SHA256SUMS file inside the archive.
	Sums []byte
	// SumsChecksum is the hex SHA256 of Sums, the manifest "verify_checksum".
	SumsChecksum string
}

// go-choria's checksum parser needs at least two characters in a name and
// its untar refuses "..", keep names simple and flat
var (
	validName       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]+$`)
	validPluginName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (p Plugin) validate() error {
	if !validPluginName.MatchString(p.Name) || strings.Contains(p.Name, "..") {
		return fmt.Errorf("invalid plugin name %q", p.Name)
	}
	if len(p.Files) == 0 {
		return fmt.Errorf("plugin %s has no files", p.Name)
	}

	seen := map[string]bool{}
	for _, f := range p.Files {
		switch {
		case !validName.MatchString(f.Name) || strings.Contains(f.Name, ".."):
			return fmt.Errorf("plugin %s: invalid file name %q", p.Name, f.Name)
		case f.Name == SumsFile:
			return fmt.Errorf("plugin %s: %s is generated, do not supply it", p.Name, SumsFile)
		case seen[f.Name]:
			return fmt.Errorf("plugin %s: duplicate file %s", p.Name, f.Name)
		}
		seen[f.Name] = true
	}

	return nil
}

// sortedFiles returns copies of the files sorted by name with normalised
// modes, the order does not depend on how the caller listed them.
func sortedFiles(files []File) []File {
	res := slices.Clone(files)
	for i := range res {
		if res[i].Mode&0o111 != 0 {
			res[i].Mode = 0o755
		} else {
			res[i].Mode = 0o644
		}
	}
	slices.SortFunc(res, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return res
}

// sums renders SHA256SUMS as sha256sum(1) does: "<hex>  <name>" per line,
// it does not list itself.
func sums(files []File) []byte {
	buf := &bytes.Buffer{}
	for _, f := range files {
		fmt.Fprintf(buf, "%s  %s\n", sha256Hex(f.Data), f.Name)
	}
	return buf.Bytes()
}

// Build creates the archive for p.
func Build(p Plugin) (*Archive, error) {
	err := p.validate()
	if err != nil {
		return nil, err
	}

	files := sortedFiles(p.Files)
	sumsData := sums(files)
	files = append(files, File{Name: SumsFile, Mode: 0o644, Data: sumsData})
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })

	// fixed so archives do not depend on when or where they were built
	mtime := p.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0).UTC()
	}

	tarball, err := writeTarball(p.Name, files, mtime)
	if err != nil {
		return nil, fmt.Errorf("archiving plugin %s: %w", p.Name, err)
	}

	return &Archive{
		Name:         p.Name,
		Tarball:      tarball,
		Checksum:     sha256Hex(tarball),
		Sums:         sumsData,
		SumsChecksum: sha256Hex(sumsData),
	}, nil
}

// writeTarball writes the directory entry and then files in the given order
// with fixed owners, modes and times, gzip has no name or time set.
func writeTarball(dir string, files []File, mtime time.Time) ([]byte, error) {
	buf := &bytes.Buffer{}

	gz, err := gzip.NewWriterLevel(buf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("creating gzip writer: %w", err)
	}
	tw := tar.NewWriter(gz)

	header := func(name string, mode int64, size int64, typ byte) *tar.Header {
		return &tar.Header{
			Typeflag: typ,
			Name:     name,
			Mode:     mode,
			Size:     size,
			Uid:      0,
			Gid:      0,
			Uname:    "root",
			Gname:    "root",
			ModTime:  mtime,
			Format:   tar.FormatUSTAR,
		}
	}

	err = tw.WriteHeader(header(dir+"/", 0o755, 0, tar.TypeDir))
	if err != nil {
		return nil, fmt.Errorf("writing directory entry: %w", err)
	}

	for _, f := range files {
		err = tw.WriteHeader(header(dir+"/"+f.Name, int64(f.Mode.Perm()), int64(len(f.Data)), tar.TypeReg))
		if err != nil {
			return nil, fmt.Errorf("writing header of %s: %w", f.Name, err)
		}
		_, err = tw.Write(f.Data)
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.Name, err)
		}
	}

	err = tw.Close()
	if err != nil {
		return nil, fmt.Errorf("closing tar: %w", err)
	}
	err = gz.Close()
	if err != nil {
		return nil, fmt.Errorf("closing gzip: %w", err)
	}

	return buf.Bytes(), nil
}
