// Package nixcheck holds the checks of the repository's Nix files that need
// no Nix build, run by the one test command (`go test ./...`):
//
//   - every .nix file parses with `nix-instantiate --parse`, which also
//     rejects unbound names;
//   - the vendorHash in pkgs/choria-reference.nix equals the NAR hash of
//     `go mod vendor` output, so a dependency change cannot land with a stale
//     hash (the failure prints the new value);
//   - the programs listed in pkgs/choria-reference.nix are exactly the cmd/
//     directories;
//   - flake.lock pins the branch that flake.nix names, and every path that
//     flake.nix refers to exists;
//   - every .nix file passes `nixfmt --check`, as checks.formatting requires
//     (when nixfmt is on the PATH).
//
// The checks that need Nix skip when Debian's nix-bin is not installed; CI
// installs it.
package nixcheck
