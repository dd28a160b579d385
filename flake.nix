{
  description = "Reproducible Choria reference deployment";

  # Pinned in flake.lock; see the README for how the revision was chosen.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Our Go programs and the upstream programs, pinned and built from
      # source. (Also in overlays.default, for the NixOS modules' defaults.)
      upstreamPackages = pkgs: {
        choria = pkgs.callPackage ./pkgs/choria.nix {
          mkGoModuleProxy = pkgs.callPackage ./pkgs/go-module-proxy.nix { };
        };
        choria-provisioner = pkgs.callPackage ./pkgs/choria-provisioner.nix { };
        aaasvc = pkgs.callPackage ./pkgs/aaasvc.nix { };
        stream-replicator = pkgs.callPackage ./pkgs/stream-replicator.nix { };
      };
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          choria-reference = pkgs.callPackage ./pkgs/choria-reference.nix { };
        in
        {
          inherit choria-reference;
          default = choria-reference;
        }
        // upstreamPackages pkgs
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.go
            pkgs.gopls
            pkgs.nats-server
            pkgs.natscli
            pkgs.nix
            pkgs.nixfmt
            pkgs.nixfmt-tree
          ];
        };
      });

      # `nix fmt`: nixfmt over every .nix file, through treefmt.
      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);

      checks = forAllSystems (pkgs: {
        inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) choria-reference;

        formatting =
          let
            nixFiles = lib.fileset.toSource {
              root = ./.;
              fileset = lib.fileset.fileFilter (file: file.hasExt "nix") ./.;
            };
          in
          pkgs.runCommand "check-nix-formatting" { nativeBuildInputs = [ pkgs.nixfmt ]; } ''
            find ${nixFiles} -name '*.nix' -print0 | xargs -0 -r nixfmt --check
            touch $out
          '';
      });

      nixosModules = { };

      # The lab's facts, the same file the Go programs embed.
      lib.topology = lib.importJSON ./topology/topology.json;
    };
}
