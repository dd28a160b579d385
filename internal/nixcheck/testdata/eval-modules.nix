# Evaluates the flake's outputs and NixOS modules with nixpkgs' own `lib`
# (lib.evalModules) against a stand-in `pkgs` and minimal declarations of
# the NixOS options the modules set. Used by TestModulesEvaluate when
# NIXPKGS_LIB points at a nixpkgs `lib` (for example a checkout of
# nix-community/nixpkgs.lib); it needs no nixpkgs and no store.
#
# Stand-in files are bash process substitutions, so the configuration
# scripts the modules generate can be run by the test as they are.
{
  nixpkgsLib,
  root,
}:

let
  lib = import nixpkgsLib;
  inherit (lib) types;

  drv =
    name: extra:
    {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
      version = "0";
      meta.mainProgram = name;
    }
    // extra;

  # A file with this content, readable by bash and jq.
  fileOf = text: "<(printf '%s' ${lib.escapeShellArg text})";

  jsonValue =
    types.nullOr (
      types.oneOf [
        types.bool
        types.int
        types.float
        types.str
        types.path
        (types.attrsOf jsonValue)
        (types.listOf jsonValue)
      ]
    )
    // {
      description = "JSON value";
    };

  format = {
    type = jsonValue;
    generate = _: value: fileOf (builtins.toJSON value);
  };

  pkgs = {
    inherit lib;
    stdenv.hostPlatform.system = "x86_64-linux";
    callPackage =
      f: args:
      let
        fn = if builtins.isFunction f then f else import f;
      in
      fn (builtins.intersectAttrs (builtins.functionArgs fn) pkgs // args);
    buildGoModule =
      args:
      builtins.deepSeq args.ldflags (
        drv args.pname {
          inherit (args) version meta;
          goArgs = args;
        }
      );
    fetchFromGitHub = args: drv "${args.repo}-source" { };
    stdenvNoCC.mkDerivation =
      args:
      drv args.pname {
        inherit (args) version;
        meta = args.meta // {
          mainProgram = args.meta.mainProgram or args.pname;
        };
        script = args.buildPhase or args.installPhase;
      };
    runCommand =
      name: args: script:
      drv name (
        (args.passthru or { })
        // {
          meta = args.meta or { };
          inherit script;
        }
      );
    writeText = _: fileOf;
    writeShellScript = name: text: drv name { inherit text; };
    writeShellScriptBin = name: text: drv name { inherit text; };
    formats.json = { }: format;
    formats.yaml = { }: format;
    jq = drv "jq" { outPath = "/usr"; };
    # The test module itself, with what the flake reads of a test.
    testers.runNixOSTest =
      test:
      test
      // {
        driverInteractive = drv "nixos-test-driver" { };
      };
    fakeNss = drv "fakeNss" { override = args: builtins.deepSeq args (drv "fakeNss" { }); };
    dockerTools = {
      streamLayeredImage = args: builtins.deepSeq args.config (drv args.name { imageArgs = args; });
      caCertificates = drv "ca-certificates" { };
    };
  }
  // lib.genAttrs [
    "zip"
    "darkhttpd"
    "nats-server"
    "natscli"
    "util-linux"
    "iproute2"
    "coreutils"
    "bashInteractive"
    "makeWrapper"
    "expect"
  ] (name: drv name { });

  flake = (import (root + "/flake.nix")).outputs {
    self = flake // {
      lib.topology = lib.importJSON (root + "/topology/topology.json");
    };
    nixpkgs = {
      inherit lib;
      legacyPackages.x86_64-linux = pkgs;
      legacyPackages.aarch64-linux = pkgs;
    };
  };

  # The NixOS options the modules set, declared loosely.
  nixos =
    { config, ... }:
    {
      options = {
        assertions = lib.mkOption {
          type = types.listOf types.attrs;
          default = [ ];
        };
        networking = {
          hostName = lib.mkOption {
            type = types.str;
            default = "nixos";
          };
          domain = lib.mkOption {
            type = types.nullOr types.str;
            default = null;
          };
          fqdnOrHostName = lib.mkOption {
            type = types.str;
            readOnly = true;
            default =
              if config.networking.domain == null then
                config.networking.hostName
              else
                "${config.networking.hostName}.${config.networking.domain}";
          };
          hosts = lib.mkOption {
            type = types.attrsOf (types.listOf types.str);
            default = { };
          };
          firewall.allowedTCPPorts = lib.mkOption {
            type = types.listOf types.port;
            default = [ ];
          };
          # nixos/modules/config/networking.nix, tasks/network-interfaces.nix
          # and virtualisation/qemu-vm.nix, as the VM test sets them.
          extraHosts = lib.mkOption {
            type = types.lines;
            default = "";
          };
          primaryIPAddress = lib.mkOption {
            type = types.str;
            default = "";
          };
          primaryIPv6Address = lib.mkOption {
            type = types.str;
            default = "";
          };
          interfaces = lib.mkOption {
            type = types.attrsOf (
              types.submodule {
                options =
                  let
                    addresses = lib.mkOption {
                      type = types.listOf (
                        types.submodule {
                          options.address = lib.mkOption { type = types.str; };
                          options.prefixLength = lib.mkOption { type = types.int; };
                        }
                      );
                      default = [ ];
                    };
                  in
                  {
                    ipv4.addresses = addresses;
                    ipv6.addresses = addresses;
                  };
              }
            );
            default = { };
          };
        };
        virtualisation = {
          vlans = lib.mkOption {
            type = types.listOf types.ints.unsigned;
            default = [ 1 ];
          };
          memorySize = lib.mkOption {
            type = types.ints.positive;
            default = 1024;
          };
          sharedDirectories = lib.mkOption {
            type = types.attrsOf (
              types.submodule {
                options.source = lib.mkOption { type = types.str; };
                options.target = lib.mkOption { type = types.path; };
                options.securityModel = lib.mkOption {
                  type = types.enum [
                    "passthrough"
                    "mapped-xattr"
                    "mapped-file"
                    "none"
                  ];
                  default = "mapped-xattr";
                };
              }
            );
            default = { };
          };
        };
        users.users = lib.mkOption {
          type = types.attrsOf (
            types.submodule {
              options = {
                isSystemUser = lib.mkOption { type = types.bool; };
                group = lib.mkOption { type = types.str; };
                description = lib.mkOption { type = types.str; };
                home = lib.mkOption { type = types.str; };
              };
            }
          );
          default = { };
        };
        users.groups = lib.mkOption {
          type = types.attrsOf (types.submodule { });
          default = { };
        };
        environment.systemPackages = lib.mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        environment.etc = lib.mkOption {
          type = types.attrsOf (types.submodule { options.source = lib.mkOption { type = types.str; }; });
          default = { };
        };
        systemd.tmpfiles.rules = lib.mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        systemd.services = lib.mkOption {
          type = types.attrsOf (
            types.submodule {
              options = {
                description = lib.mkOption { type = types.str; };
                wantedBy = lib.mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                };
                requiredBy = lib.mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                };
                wants = lib.mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                };
                after = lib.mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                };
                before = lib.mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                };
                path = lib.mkOption {
                  type = types.listOf types.package;
                  default = [ ];
                };
                environment = lib.mkOption {
                  type = types.attrsOf types.str;
                  default = { };
                };
                script = lib.mkOption {
                  type = types.lines;
                  default = "";
                };
                serviceConfig = lib.mkOption {
                  type = types.attrsOf types.anything;
                  default = { };
                };
              };
            }
          );
          default = { };
        };
        # nixpkgs' services.nats, as its module declares them.
        services.nats = {
          enable = lib.mkEnableOption "NATS";
          serverName = lib.mkOption {
            type = types.str;
            default = "nats";
          };
          jetstream = lib.mkEnableOption "JetStream";
          port = lib.mkOption {
            type = types.port;
            default = 4222;
          };
          settings = lib.mkOption {
            type = format.type;
            default = { };
          };
        };
      };
    };

  evaluate =
    modules:
    (lib.evalModules {
      modules = [ nixos ] ++ modules;
      specialArgs = { inherit pkgs; };
    }).config;

  report = config: {
    inherit (config) networking users environment;
    systemd = {
      inherit (config.systemd) tmpfiles;
      services = lib.mapAttrs (
        _: s:
        s
        // {
          serviceConfig = s.serviceConfig // {
            ExecStartPre = map (x: x.text or x) (lib.toList (s.serviceConfig.ExecStartPre or [ ]));
          };
          path = map (p: p.name) s.path;
        }
      ) config.systemd.services;
    };
    services.nats = config.services.nats;
  };

  m = flake.nixosModules;
  scenarios = {
    broker = [
      m.choria-broker
      {
        networking.hostName = "broker";
        networking.domain = "example.net";
        services.choria-broker = {
          enable = true;
          openFirewall = true;
          seedFile = "/secrets/broker.seed";
          tokenFile = "/secrets/broker.jwt";
          tlsKeyFile = "/secrets/tls.key";
          tlsCertificateFile = "/secrets/tls.crt";
          issuerPublicKeyFile = "/secrets/issuer.public";
          systemPasswordFile = "/secrets/system-password";
          provisioningPasswordFile = "/secrets/provisioning-password";
          settings."plugin.choria.middleware_hosts" = [
            "nats://broker.example.net:4222"
            "nats://broker2.example.net:4222"
          ];
        };
      }
    ];
    server = [
      m.choria-server
      {
        services.choria-server = {
          enable = true;
          seedFile = "/secrets/server.seed";
          tokenFile = "/secrets/server.jwt";
          issuerPublicKeyFile = "/secrets/issuer.public";
          settings.registerinterval = 60;
        };
      }
    ];
    server-provisioning = [
      m.choria-server
      {
        services.choria-server = {
          enable = true;
          provisioning.enable = true;
          provisioning.tokenFile = "/secrets/provisioning.jwt";
        };
      }
    ];
    provisioner = [
      m.choria-provisioner
      {
        services.choria-provisioner = {
          enable = true;
          tokenFile = "/secrets/provisioning-token";
          brokerPasswordFile = "/secrets/provisioning-password";
          signingSeedFile = "/secrets/signer.seed";
          signingTokenFile = "/secrets/signer.jwt";
          issuerPublicKeyFile = "/secrets/issuer.public";
          settings.helper = "/bin/choria-provision-helper --config /etc/helper.json";
          choriaSettings."plugin.choria.middleware_hosts" = "broker.example.net:4222";
        };
      }
    ];
    aaasvc = [
      m.choria-aaasvc
      {
        services.choria-aaasvc = {
          enable = true;
          openFirewall = true;
          usersFile = "/secrets/users.json";
          tlsKeyFile = "/secrets/tls.key";
          tlsCertificateFile = "/secrets/tls.crt";
          chainSignerSeedFile = "/secrets/chain.seed";
          chainSignerTokenFile = "/secrets/chain.jwt";
          chainSignerPublicKeyFile = "/secrets/chain.public";
          requestSignerSeedFile = "/secrets/request.seed";
          requestSignerTokenFile = "/secrets/request.jwt";
          choria.seedFile = "/secrets/service.seed";
          choria.tokenFile = "/secrets/service.jwt";
        };
      }
    ];
    replicator = [
      m.choria-stream-replicator
      {
        services.choria-stream-replicator = {
          enable = true;
          settings = {
            name = "LAB";
            monitor_port = 8082;
            streams = [
              {
                stream = "CHORIA_REGISTRATION";
                source_choria.collective = "choria";
              }
            ];
          };
          credentialFiles."streams.0.source_choria.seed_file" = "/secrets/choria.seed";
        };
      }
    ];
    client = [
      m.choria-client
      { programs.choria.enable = true; }
    ];
    plugins = [
      m.choria-plugins-webserver
      { services.choria-plugins-webserver.enable = true; }
    ];
  };

  # The lab profile as each kind of host; the broker host bootstraps.
  labScenarios = lib.listToAttrs (
    map
      (
        host:
        lib.nameValuePair "lab-${host}" [
          m.lab
          # A role module imported as well as lab must not clash.
          m.choria-broker
          {
            services.choria-lab = {
              enable = true;
              inherit host;
              bootstrap = host == "broker";
            };
          }
        ]
      )
      [
        "broker"
        "provisioner"
        "aaa"
        "replicator"
        "nats"
        "plugins"
        "client"
        "server3"
      ]
  );
  # The VM test (nix/tests/walkthrough.nix) and its nodes, each evaluated
  # with what nixos/lib/testing/network.nix adds to a test node: eth<i> for
  # the i-th VLAN, addressed 192.168.<vlan>.<node number>, and every node's
  # first address in extraHosts. The test must override all of it.
  walkthrough = flake.checks.x86_64-linux.walkthrough;
  nodeNames = lib.attrNames walkthrough.nodes;
  nodeNumber = lib.listToAttrs (lib.imap1 (i: n: lib.nameValuePair n i) nodeNames);
  driverNetwork =
    name:
    { config, ... }:
    let
      interfaces = lib.imap1 (i: vlan: {
        name = "eth${toString i}";
        inherit vlan;
      }) config.virtualisation.vlans;
      address = i: "192.168.${toString i.vlan}.${toString nodeNumber.${name}}";
    in
    {
      networking.hostName = lib.mkDefault name;
      networking.interfaces = lib.listToAttrs (
        map (
          i:
          lib.nameValuePair i.name {
            ipv4.addresses = [
              {
                address = address i;
                prefixLength = 24;
              }
            ];
            ipv6.addresses = [
              {
                address = "2001:db8:${toString i.vlan}::${toString nodeNumber.${name}}";
                prefixLength = 64;
              }
            ];
          }
        ) interfaces
      );
      networking.primaryIPAddress = lib.optionalString (interfaces != [ ]) (
        address (lib.head interfaces)
      );
      networking.extraHosts = lib.concatMapStrings (
        n: "192.168.1.${toString nodeNumber.${n}} ${n}\n"
      ) nodeNames;
    };

  reportNode =
    config:
    report config
    // {
      inherit (config) virtualisation;
      lab = {
        inherit (config.services.choria-lab) host bootstrap credentialsDir;
        plugins = config.services.choria-lab.plugins.name;
        servers = config.services.choria-lab.topology.servers.count;
      };
      webserverRoot = config.services.choria-plugins-webserver.root;
      docrootScript = config.systemd.services.choria-lab-docroot.script or null;
      enabled = lib.filter (n: config.services.${n}.enable or false) [
        "choria-broker"
        "choria-server"
        "choria-provisioner"
        "choria-aaasvc"
        "choria-stream-replicator"
        "choria-plugins-webserver"
        "nats"
      ];
      client = config.programs.choria.enable;
    };
in
{
  walkthrough = {
    inherit (walkthrough) name globalTimeout testScript;
    facts = walkthrough.passthru.facts;
    nodes = lib.mapAttrs (
      name: node:
      reportNode (evaluate [
        node
        (driverNetwork name)
      ])
    ) walkthrough.nodes;
  };

  modules = lib.mapAttrs (_: modules: report (evaluate modules)) (scenarios // labScenarios);

  packages = lib.mapAttrs (_: p: {
    inherit (p) name version;
    meta = p.meta or { };
  }) flake.packages.x86_64-linux;

  goModuleProxy = flake.packages.x86_64-linux.choria.goArgs.passthru.appbuilderProxy.script;
  goModulesPreBuild = (flake.packages.x86_64-linux.choria.goArgs.overrideModAttrs { } { }).preBuild;

  images = lib.mapAttrs (_: i: i.imageArgs.config) flake.legacyPackages.x86_64-linux.images;

  apps = flake.apps.x86_64-linux;

  # The scripts that run choria-plugin-pack: the build of choria-plugins, and
  # the lab profile's start-up on the bootstrapping host and on a server.
  pluginScripts = {
    client = (evaluate labScenarios.lab-client).systemd.services.choria-lab-credentials.script;
    docroot = (evaluate labScenarios.lab-plugins).systemd.services.choria-lab-docroot.script;
    build = flake.packages.x86_64-linux.choria-plugins.script;
    bootstrap = (evaluate labScenarios.lab-broker).systemd.services.choria-lab-credentials.script;
    server = (evaluate labScenarios.lab-server3).systemd.services.choria-lab-credentials.script;
  };
  nixosModules = lib.attrNames flake.nixosModules;
}
