package nixcheck

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/reproducible-choria/deployment/internal/lab/labtest"
	"github.com/reproducible-choria/deployment/internal/testenv"
)

// toolPackages names the nixpkgs package of each tool the lab's hosts
// need (labtest.HostTools, what the NixOS-like walkthrough test gives its
// lab); sh is NixOS's own /bin/sh.
var toolPackages = map[string]string{
	"awk": "gawk", "bash": "bashInteractive", "grep": "gnugrep", "gzip": "gzip", "sed": "gnused",
	"tar": "gnutar", "sh": "", "id": "coreutils", "env": "coreutils",
}

// TestLabWrapperCarriesTheHostTools: `nix run .#lab` puts a package for
// every tool the hosts need on the lab's PATH, which is all they get on
// NixOS.
func TestLabWrapperCarriesTheHostTools(t *testing.T) {
	wrapper := readFile(t, testenv.ModuleRoot(t), "pkgs/choria-lab.nix")
	binPath := regexp.MustCompile(`(?s)lib\.makeBinPath \[(.*?)\]`).FindStringSubmatch(wrapper)
	if binPath == nil {
		t.Fatal("pkgs/choria-lab.nix has no lib.makeBinPath list")
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*([A-Za-z][A-Za-z0-9_-]*)`).FindAllStringSubmatch(binPath[1], -1) {
		listed[m[1]] = true
	}
	for _, tool := range labtest.HostTools {
		pkg, ok := toolPackages[tool]
		if !ok {
			pkg = "coreutils"
		}
		if pkg != "" {
			assert.True(t, listed[pkg], "%s needs %s on the lab's PATH in pkgs/choria-lab.nix", tool, pkg)
		}
	}
	for _, pkg := range []string{"util-linux", "iproute2"} {
		assert.True(t, listed[pkg], "the lab itself needs %s", pkg)
	}
}
