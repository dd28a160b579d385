package pluginpack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func samplePlugin() Plugin {
	return Plugin{
		Name: "sample",
		Files: []File{
			{Name: "tool", Mode: 0o700, Data: []byte("#!/bin/sh\necho hi\n")},
			{Name: "tool.json", Mode: 0o600, Data: []byte(`{"a":1}`)},
			{Name: "README.md", Mode: 0o644, Data: []byte("read me\n")},
		},
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func readTarball(t *testing.T, tgz []byte) (*gzip.Reader, []entry) {
	t.Helper()

	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	require.NoError(t, err)
	tr := tar.NewReader(gz)

	var res []entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		dat, err := io.ReadAll(tr)
		require.NoError(t, err)
		res = append(res, entry{hdr: hdr, data: dat})
	}

	return gz, res
}

func TestBuildIsReproducible(t *testing.T) {
	a, err := Build(samplePlugin())
	require.NoError(t, err)
	b, err := Build(samplePlugin())
	require.NoError(t, err)
	require.Equal(t, a.Tarball, b.Tarball)
	require.Equal(t, a.Checksum, b.Checksum)

	// the order files are listed in does not matter
	p := samplePlugin()
	p.Files[0], p.Files[2] = p.Files[2], p.Files[0]
	c, err := Build(p)
	require.NoError(t, err)
	require.Equal(t, a.Tarball, c.Tarball)

	// the modification time is the one knob, proving it is pinned
	p = samplePlugin()
	p.ModTime = time.Unix(1700000000, 0)
	d, err := Build(p)
	require.NoError(t, err)
	require.NotEqual(t, a.Checksum, d.Checksum)

	s := sha256.Sum256(a.Tarball)
	require.Equal(t, hex.EncodeToString(s[:]), a.Checksum)
}

func TestArchiveLayout(t *testing.T) {
	a, err := Build(samplePlugin())
	require.NoError(t, err)

	gz, entries := readTarball(t, a.Tarball)
	require.Equal(t, "", gz.Name)
	require.True(t, gz.ModTime.IsZero() || gz.ModTime.Unix() == 0)

	var names []string
	for _, e := range entries {
		names = append(names, e.hdr.Name)
		require.Equal(t, 0, e.hdr.Uid)
		require.Equal(t, 0, e.hdr.Gid)
		require.Equal(t, "root", e.hdr.Uname)
		require.Equal(t, "root", e.hdr.Gname)
		require.Equal(t, int64(0), e.hdr.ModTime.Unix())
	}
	// one directory named after the plugin first, as the archive watcher
	// creates it and moves it into place
	require.Equal(t, []string{"sample/", "sample/README.md", "sample/SHA256SUMS", "sample/tool", "sample/tool.json"}, names)
	require.Equal(t, byte(tar.TypeDir), entries[0].hdr.Typeflag)
	require.Equal(t, int64(0o755), entries[0].hdr.Mode)

	modes := map[string]int64{}
	content := map[string][]byte{}
	for _, e := range entries[1:] {
		require.Equal(t, byte(tar.TypeReg), e.hdr.Typeflag)
		modes[e.hdr.Name] = e.hdr.Mode
		content[e.hdr.Name] = e.data
	}
	require.Equal(t, map[string]int64{"sample/README.md": 0o644, "sample/SHA256SUMS": 0o644, "sample/tool": 0o755, "sample/tool.json": 0o644}, modes)

	// SHA256SUMS as sha256sum(1) writes it, every file except itself
	sums := content["sample/SHA256SUMS"]
	require.Equal(t, a.Sums, sums)
	line := regexp.MustCompile(`^[0-9a-f]{64}  \S+$`)
	var expected bytes.Buffer
	for _, f := range []string{"README.md", "tool", "tool.json"} {
		s := sha256.Sum256(content["sample/"+f])
		fmt.Fprintf(&expected, "%x  %s\n", s, f)
	}
	require.Equal(t, expected.String(), string(sums))
	for _, l := range bytes.Split(bytes.TrimSpace(sums), []byte("\n")) {
		require.Regexp(t, line, string(l))
	}
	s := sha256.Sum256(sums)
	require.Equal(t, hex.EncodeToString(s[:]), a.SumsChecksum)
}

func TestBuildRejectsBadPlugins(t *testing.T) {
	cases := map[string]struct {
		p   Plugin
		msg string
	}{
		"no name":        {Plugin{Files: samplePlugin().Files}, "invalid plugin name"},
		"path name":      {Plugin{Name: "a/b", Files: samplePlugin().Files}, "invalid plugin name"},
		"dots":           {Plugin{Name: "a..b", Files: samplePlugin().Files}, "invalid plugin name"},
		"no files":       {Plugin{Name: "empty"}, "has no files"},
		"nested file":    {Plugin{Name: "x", Files: []File{{Name: "dir/file"}}}, `invalid file name "dir/file"`},
		"one char name":  {Plugin{Name: "x", Files: []File{{Name: "a"}}}, `invalid file name "a"`},
		"sums supplied":  {Plugin{Name: "x", Files: []File{{Name: SumsFile}}}, "is generated"},
		"duplicate file": {Plugin{Name: "x", Files: []File{{Name: "ab"}, {Name: "ab"}}}, "duplicate file ab"},
	}

	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Build(tc.p)
			require.ErrorContains(t, err, tc.msg)
		})
	}
}
