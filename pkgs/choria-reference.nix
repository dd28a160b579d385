# Our own Go programs, built from this repository.
#
# vendorHash is the NAR hash of `go mod vendor` output. `go test ./...`
# (internal/nixcheck) recomputes it with Debian's nix-bin and prints the new
# value when go.mod/go.sum change, so updating it is a one-line edit.
{
  lib,
  buildGoModule,
}:

let
  root = ../.;

  # One line per program under cmd/. internal/nixcheck fails when a listed
  # directory is missing or a cmd/ directory is not listed.
  commands = [
    "choria-bootstrap"
    "choria-facts"
    "choria-lab"
    "choria-plugin-pack"
    "choria-plugins-server"
    "choria-provision-helper"
    "choria-ready"
    "requests"
  ];

  # Directories whose data files are compiled in with //go:embed.
  embeddedDataDirs = [
    ../agents
    ../machines
    ../topology
    ../upstream
    ../walkthrough
  ];

  # Every Go file, tests included: `go mod vendor` also vendors what tests
  # import, and the source must match what internal/nixcheck hashes.
  goSources = lib.fileset.unions [
    ../go.mod
    ../go.sum
    (lib.fileset.fileFilter (file: file.hasExt "go") root)
  ];

  notDocumentation = lib.fileset.fileFilter (file: !(file.hasExt "md")) root;

  embeddedData = lib.fileset.unions (
    map (dir: lib.fileset.intersection (lib.fileset.maybeMissing dir) notDocumentation) embeddedDataDirs
  );

  # A local vendor/ (git-ignored) must stay out: buildGoModule refuses a
  # source that has one when vendorHash is set.
  localVendor = lib.fileset.maybeMissing ../vendor;
in
buildGoModule {
  pname = "choria-reference";
  version = "0.1.0";

  # Only what the Go build reads, so README and Nix edits do not rebuild.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.difference (lib.fileset.union goSources embeddedData) localVendor;
  };

  vendorHash = "sha256-fa+gyWdUgPZxjsC7aW5+TM5vk6bMAi1KZDig9+pf8m0=";

  subPackages = map (name: "cmd/${name}") commands;

  env.CGO_ENABLED = 0;

  # buildGoModule already adds -trimpath to GOFLAGS and -buildid= to ldflags.
  ldflags = [
    "-s"
    "-w"
  ];

  # The Go tests need root, network namespaces and the upstream programs;
  # CI runs them with `go test ./...`, not inside the build sandbox.
  doCheck = false;

  meta = {
    description = "Reproducible Choria reference deployment: bootstrapper, provisioning helper and node programs";
    license = lib.licenses.asl20;
    mainProgram = "choria-bootstrap";
    platforms = lib.platforms.linux;
  };
}
