// Package walkthrough holds the reference README's walkthrough as data,
// scenario.json: the file the Go runner (internal/walkthrough) embeds and
// the NixOS VM test reads with lib.importJSON. Its format is described in
// the file's own description field.
package walkthrough

import (
	"bytes"
	_ "embed"
)

//go:embed scenario.json
var scenario []byte

// JSON returns a copy of scenario.json.
func JSON() []byte { return bytes.Clone(scenario) }
