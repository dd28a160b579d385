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
      # Pinned once, in upstream/pins.json, for Nix and for
      # `choria-lab build-upstream`.
      pins = import ./pkgs/pins.nix { inherit lib; };
      upstreamPackages = pkgs: {
        choria = pkgs.callPackage ./pkgs/choria.nix {
          mkGoModuleProxy = pkgs.callPackage ./pkgs/go-module-proxy.nix { };
          pin = pins.sources.choria;
          inherit (pins.moduleProxies) appbuilder;
        };
        choria-provisioner = pkgs.callPackage ./pkgs/choria-provisioner.nix {
          pin = pins.sources.choria-provisioner;
        };
        aaasvc = pkgs.callPackage ./pkgs/aaasvc.nix { pin = pins.sources.aaasvc; };
        stream-replicator = pkgs.callPackage ./pkgs/stream-replicator.nix {
          pin = pins.sources.stream-replicator;
        };
      };

      # The VM tests of nix/tests/, for checks.walkthrough, checks.cluster
      # and apps.lab-vms.
      walkthroughTest =
        pkgs:
        pkgs.callPackage ./nix/tests/walkthrough.nix {
          inherit (self) nixosModules;
          inherit (self.lib) topology;
          scenarioFile = ./walkthrough/scenario.json;
        };
      clusterTest =
        pkgs:
        pkgs.callPackage ./nix/tests/cluster.nix {
          inherit (self) nixosModules;
          inherit (self.lib) topology;
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
          # Plugin archives and unsigned manifests, made with our packager.
          choria-plugins = pkgs.callPackage ./pkgs/choria-plugins.nix {
            inherit choria-reference;
            inherit (self.lib) topology;
          };
        }
        // upstreamPackages pkgs
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = lib.attrValues (upstreamPackages pkgs) ++ [
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
        # The walkthrough on one VM per host, four VLANs (needs KVM).
        walkthrough = walkthroughTest pkgs;
        # Three brokers, one of them stopped: the fleet survives (needs KVM).
        cluster = clusterTest pkgs;

        inherit (self.packages.${pkgs.stdenv.hostPlatform.system})
          choria-reference
          choria-plugins
          choria
          choria-provisioner
          aaasvc
          stream-replicator
          ;

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

      # One module per role, usable on their own, each defaulting its
      # package to this flake's; `lab` composes them from the topology.
      # The `key` lets a configuration import a role module and `lab`.
      nixosModules =
        let
          withPackages =
            name: file: defaults:
            { pkgs, ... }:
            {
              key = "choria-reference#nixosModules.${name}";
              imports = lib.toList file;
              config = defaults self.packages.${pkgs.stdenv.hostPlatform.system};
            };
        in
        {
          choria-broker = withPackages "choria-broker" ./nix/modules/choria-broker.nix (p: {
            services.choria-broker.package = lib.mkDefault p.choria;
          });
          choria-server = withPackages "choria-server" ./nix/modules/choria-server.nix (p: {
            services.choria-server.package = lib.mkDefault p.choria;
          });
          choria-provisioner = withPackages "choria-provisioner" ./nix/modules/choria-provisioner.nix (p: {
            services.choria-provisioner.package = lib.mkDefault p.choria-provisioner;
          });
          choria-aaasvc = withPackages "choria-aaasvc" ./nix/modules/choria-aaasvc.nix (p: {
            services.choria-aaasvc.package = lib.mkDefault p.aaasvc;
          });
          choria-stream-replicator =
            withPackages "choria-stream-replicator" ./nix/modules/choria-stream-replicator.nix
              (p: {
                services.choria-stream-replicator.package = lib.mkDefault p.stream-replicator;
              });
          choria-client = withPackages "choria-client" ./nix/modules/choria-client.nix (p: {
            programs.choria.package = lib.mkDefault p.choria;
          });
          choria-plugins-webserver =
            withPackages "choria-plugins-webserver" ./nix/modules/choria-plugins-webserver.nix
              (p: {
                services.choria-plugins-webserver.package = lib.mkDefault p.choria-reference;
              });
          lab =
            withPackages "lab"
              [
                ./nix/modules/lab.nix
                self.nixosModules.choria-broker
                self.nixosModules.choria-server
                self.nixosModules.choria-provisioner
                self.nixosModules.choria-aaasvc
                self.nixosModules.choria-stream-replicator
                self.nixosModules.choria-client
                self.nixosModules.choria-plugins-webserver
              ]
              (p: {
                services.choria-lab.package = lib.mkDefault p.choria-reference;
                services.choria-lab.plugins = lib.mkDefault p.choria-plugins;
              });
        };

      # The packages, for the modules' defaults in a nixpkgs of one's own.
      overlays.default =
        final: _prev:
        upstreamPackages final
        // {
          choria-reference = final.callPackage ./pkgs/choria-reference.nix { };
        };

      # `nix build .#images.<role>`, then `./result | docker load`. Nested,
      # so not under packages (whose values must all be derivations).
      legacyPackages = forAllSystems (pkgs: {
        images = pkgs.callPackage ./nix/images.nix {
          inherit (self.packages.${pkgs.stdenv.hostPlatform.system})
            choria
            choria-provisioner
            aaasvc
            stream-replicator
            choria-reference
            choria-plugins
            ;
          inherit (self.lib) topology;
        };
      });

      # `nix run .#lab`: the namespace lab with the upstream programs.
      apps = forAllSystems (
        pkgs:
        let
          lab = pkgs.callPackage ./pkgs/choria-lab.nix {
            inherit (self.packages.${pkgs.stdenv.hostPlatform.system})
              choria
              choria-provisioner
              aaasvc
              stream-replicator
              choria-reference
              ;
          };
          vms = (walkthroughTest pkgs).driverInteractive;
        in
        {
          lab = {
            type = "app";
            program = lib.getExe lab;
            meta.description = lab.meta.description;
          };
          # The walkthrough's VMs under the interactive test driver.
          lab-vms = {
            type = "app";
            program = lib.getExe vms;
            meta.description = "The Choria lab as NixOS VMs, one per host, in the NixOS test driver's interactive shell";
          };
        }
      );

      # The lab's facts, the same file the Go programs embed.
      lib.topology = lib.importJSON ./topology/topology.json;
    };
}
