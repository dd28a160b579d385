// Package scenario holds the reference README's walkthrough as data,
// scenario.json: the file the Go runner (package walkthrough, in
// internal/walkthrough) embeds and the NixOS VM test reads with
// lib.importJSON. Its format is described in the file's own description
// field. The directory is walkthrough/, the path the Nix side reads the
// file at; the package is named for what it holds, so that "walkthrough"
// names one package, the runner.
package scenario

import (
	"bytes"
	_ "embed"
)

//go:embed scenario.json
var embedded []byte

// JSON returns a copy of scenario.json.
func JSON() []byte { return bytes.Clone(embedded) }
