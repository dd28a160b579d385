# Evaluates the flake's outputs and NixOS modules with nixpkgs' own `lib`
# (lib.evalModules) against a stand-in `pkgs` and declarations, typed as
# nixpkgs types them, of the NixOS options the modules set. Used by
# TestModulesEvaluate when NIXPKGS_LIB points at a nixpkgs `lib` (for example
# a checkout of nix-community/nixpkgs.lib); it needs no nixpkgs and no store.
#
# `scenario`, a function from the flake's nixosModules to a list of modules,
# adds the attribute `scenario`: that configuration, reported as `modules`
# reports each of its own (select it with -A scenario).
#
# Stand-in files are bash process substitutions, so the configuration
# scripts the modules generate can be run by the test as they are; each
# behind a "/" (bash expands /<(…) to //dev/fd/N), an absolute path as a
# store path is, so that options of type path accept them.
{
  nixpkgsLib,
  root,
  scenario ? null,
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
  fileOf = text: "/<(printf '%s' ${lib.escapeShellArg text})";

  # pkgs.formats.json and .yaml (pkgs/pkgs-lib/formats.nix, formats/*.nix:
  # yaml is yaml_1_1), with their types; both write JSON here.
  format = type: {
    inherit type;
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
    formats.json = { }: format types.json;
    formats.yaml = { }: format (types.serializableValueWith { typeName = "YAML 1.1"; });
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
    "nats-server"
    "natscli"
    "util-linux"
    "iproute2"
    "coreutils"
    "gnugrep"
    "gnused"
    "gawk"
    "gnutar"
    "gzip"
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

  # The NixOS options the modules (and the VM test) set or read, each with
  # the type, and where it matters the default, nixpkgs declares for it
  # (NixOS 26.05; the file named above each group), so that a misspelt option
  # or a value of the wrong type fails here as it does in NixOS. Submodules
  # accept no undeclared attribute. Only these options are declared, not the
  # others of those files, nor the definitions nixpkgs makes of them.
  nixos =
    { config, options, ... }:
    let
      # nixos/lib/systemd-lib.nix
      unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
      assertValueOneOf =
        name: values: group: attr:
        lib.optional (
          attr ? ${name} && !lib.elem attr.${name} values
        ) "Systemd ${group} field `${name}' cannot have value `${toString attr.${name}}'.";
      checkUnitConfig =
        group: checks: attrs:
        let
          # Applied to the whole attribute set, so values may still be
          # mkOverride or mkIf wrappers.
          defs = lib.mapAttrs (
            _: v: if v._type or "" == "override" || v._type or "" == "if" then v.content else v
          ) attrs;
          errors = lib.concatMap (c: c group defs) checks;
        in
        if errors == [ ] then true else builtins.trace (lib.concatStringsSep "\n" errors) false;

      # nixos/lib/systemd-unit-options.nix
      unitOption = lib.mkOptionType {
        name = "systemd option";
        merge =
          loc: defs:
          if lib.any (def: lib.isList def.value) defs then
            lib.concatMap (def: lib.toList def.value) defs
          else
            lib.mergeEqualOption loc defs;
      };
      checkService = checkUnitConfig "Service" [
        (assertValueOneOf "Type" [
          "exec"
          "simple"
          "forking"
          "oneshot"
          "dbus"
          "notify"
          "notify-reload"
          "idle"
        ])
        (assertValueOneOf "Restart" [
          "no"
          "on-success"
          "on-failure"
          "on-abnormal"
          "on-abort"
          "always"
        ])
      ];
      unitNames = lib.mkOption {
        type = types.listOf unitNameType;
        default = [ ];
      };

      # nixos/modules/config/users-groups.nix: the `apply` of users.users.*.group
      checkGroupName =
        x:
        assert (
          lib.stringLength x < 32
          || abort "Group name '${x}' is longer than 31 characters which is not allowed!"
        );
        x;

      # nixos/modules/tasks/network-interfaces.nix (addrOpts)
      addresses =
        v:
        lib.mkOption {
          type = types.listOf (
            types.submodule {
              options.address = lib.mkOption { type = types.str; };
              options.prefixLength = lib.mkOption {
                type = types.ints.between 0 (if v == 4 then 32 else 128);
              };
            }
          );
          default = [ ];
        };
    in
    {
      options = {
        # nixos/modules/misc/assertions.nix
        assertions = lib.mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };

        networking = {
          # nixos/modules/tasks/network-interfaces.nix; the hostName default
          # is config.system.nixos.distroId.
          hostName = lib.mkOption {
            type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
            default = "nixos";
          };
          domain = lib.mkOption {
            type = types.nullOr types.str;
            default = null;
          };
          fqdn = lib.mkOption {
            type = types.str;
            default =
              if config.networking.hostName != "" && config.networking.domain != null then
                "${config.networking.hostName}.${config.networking.domain}"
              else
                throw ''
                  The FQDN is required but cannot be determined from `networking.hostName`
                  and `networking.domain`. Please ensure these options are set properly or
                  set `networking.fqdn` directly.
                '';
          };
          fqdnOrHostName = lib.mkOption {
            type = types.str;
            readOnly = true;
            default =
              if
                config.networking.domain != null
                || options.networking.fqdn.highestPrio < (lib.mkOptionDefault { }).priority
              then
                config.networking.fqdn
              else
                config.networking.hostName;
          };
          interfaces = lib.mkOption {
            type = types.attrsOf (
              types.submodule {
                options.ipv4.addresses = addresses 4;
                options.ipv6.addresses = addresses 6;
              }
            );
            default = { };
          };

          # nixos/modules/config/networking.nix. nixpkgs declares hosts
          # without a default and defines the 127.0.0.2 and ::1 entries
          # itself; those are left out here.
          hosts = lib.mkOption {
            type = types.attrsOf (types.listOf types.str);
            default = { };
          };
          extraHosts = lib.mkOption {
            type = types.lines;
            default = "";
          };

          # nixos/modules/services/networking/firewall.nix
          firewall.allowedTCPPorts = lib.mkOption {
            type = types.listOf types.port;
            default = [ ];
            apply = ports: lib.unique (builtins.sort builtins.lessThan ports);
          };

          # nixos/modules/virtualisation/qemu-vm.nix
          primaryIPAddress = lib.mkOption {
            type = types.str;
            default = "";
          };
          primaryIPv6Address = lib.mkOption {
            type = types.str;
            default = "";
          };
        };

        # nixos/modules/virtualisation/qemu-vm.nix; the vlans default is
        # [ 1 ] when virtualisation.interfaces (not set here) is empty.
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

        # nixos/modules/config/users-groups.nix (userOpts; of groupOpts the
        # modules set nothing)
        users.users = lib.mkOption {
          type = types.attrsOf (
            types.submodule {
              options = {
                isSystemUser = lib.mkOption {
                  type = types.bool;
                  default = false;
                };
                group = lib.mkOption {
                  type = types.str;
                  apply = checkGroupName;
                  default = "";
                };
                description = lib.mkOption {
                  type = types.passwdEntry types.str;
                  default = "";
                };
                home = lib.mkOption {
                  type = types.passwdEntry types.path;
                  default = "/var/empty";
                };
              };
            }
          );
          default = { };
        };
        users.groups = lib.mkOption {
          type = types.attrsOf (types.submodule { });
          default = { };
        };

        # nixos/modules/config/system-path.nix
        environment.systemPackages = lib.mkOption {
          type = types.listOf types.package;
          default = [ ];
        };

        # nixos/modules/system/etc/etc.nix
        environment.etc = lib.mkOption {
          type = types.attrsOf (types.submodule { options.source = lib.mkOption { type = types.path; }; });
          default = { };
        };

        # nixos/modules/system/boot/systemd/tmpfiles.nix
        systemd.tmpfiles.rules = lib.mkOption {
          type = types.listOf types.str;
          default = [ ];
        };

        # nixos/modules/system/boot/systemd.nix: systemdUtils.types.services
        # (nixos/lib/systemd-types.nix), a submodule of the options of
        # nixos/lib/systemd-unit-options.nix (commonUnitOptions,
        # sharedOptions, serviceOptions) of which these are set.
        systemd.services = lib.mkOption {
          type = types.attrsOf (
            types.submodule {
              options = {
                description = lib.mkOption {
                  type = types.singleLineStr;
                  default = "";
                };
                wantedBy = unitNames;
                requiredBy = unitNames;
                requires = unitNames;
                wants = unitNames;
                after = unitNames;
                before = unitNames;
                path = lib.mkOption {
                  type = types.listOf (
                    types.oneOf [
                      types.package
                      types.str
                    ]
                  );
                  default = [ ];
                };
                environment = lib.mkOption {
                  type = types.attrsOf (
                    types.nullOr (
                      types.oneOf [
                        types.str
                        types.path
                        types.package
                      ]
                    )
                  );
                  default = { };
                };
                script = lib.mkOption {
                  type = types.lines;
                  default = "";
                };
                unitConfig = lib.mkOption {
                  type = types.attrsOf unitOption;
                  default = { };
                };
                serviceConfig = lib.mkOption {
                  type = types.addCheck (types.attrsOf unitOption) checkService;
                  default = { };
                };
              };
            }
          );
          default = { };
        };

        # nixos/modules/services/networking/nats.nix
        services.nats = {
          enable = lib.mkEnableOption "NATS messaging system";
          user = lib.mkOption {
            type = types.str;
            default = "nats";
          };
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
            type = (pkgs.formats.json { }).type;
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
    # networking.fqdn throws where there is no domain, as in NixOS.
    networking = removeAttrs config.networking [ "fqdn" ];
    inherit (config) users environment;
    systemd = {
      inherit (config.systemd) tmpfiles;
      services = lib.mapAttrs (
        _: s:
        s
        // {
          serviceConfig = s.serviceConfig // {
            ExecStartPre = map (x: x.text or x) (lib.toList (s.serviceConfig.ExecStartPre or [ ]));
          };
          path = map (p: p.name or p) s.path;
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
    broker-cluster = [
      m.choria-broker
      {
        networking.hostName = "broker2";
        networking.domain = "example.net";
        services.choria-broker = {
          enable = true;
          seedFile = "/secrets/broker.seed";
          cluster.peers = map (n: "nats://${n}.example.net:5222") [
            "broker1"
            "broker2"
            "broker3"
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
  labScenarios =
    lib.listToAttrs (
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
    )
    // {
      # The NATS host of the cluster profile (every broker listed).
      lab-nats-cluster = [
        m.lab
        {
          services.choria-lab = {
            enable = true;
            host = "nats";
            topology = (import (root + "/nix/topology.nix") { inherit lib; } flake.lib.topology).withBrokers (
              lib.length flake.lib.topology.brokers.hosts
            );
          };
        }
      ];
    };
  # The VM tests (nix/tests/walkthrough.nix, cluster.nix) and their nodes,
  # each evaluated with what nixos/lib/testing/network.nix adds to a test
  # node: eth<i> for the i-th VLAN, addressed 192.168.<vlan>.<node number>,
  # and every node's first address in extraHosts. The test must override
  # all of it.
  driverNetwork =
    nodeNames: name:
    { config, ... }:
    let
      nodeNumber = lib.listToAttrs (lib.imap1 (i: n: lib.nameValuePair n i) nodeNames);
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
        brokers = config.services.choria-lab.topology.brokers.count;
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

  reportVMTest = test: {
    inherit (test) name globalTimeout testScript;
    facts = test.passthru.facts;
    nodes = lib.mapAttrs (
      name: node:
      reportNode (evaluate [
        node
        (driverNetwork (lib.attrNames test.nodes) name)
      ])
    ) test.nodes;
  };
in
{
  walkthrough = reportVMTest flake.checks.x86_64-linux.walkthrough;
  cluster = reportVMTest flake.checks.x86_64-linux.cluster;

  modules = lib.mapAttrs (_: modules: report (evaluate modules)) (scenarios // labScenarios);

  packages = lib.mapAttrs (_: p: {
    inherit (p) name version;
    meta = p.meta or { };
  }) flake.packages.x86_64-linux;

  goModuleProxy = flake.packages.x86_64-linux.choria.goArgs.passthru.appbuilderProxy.script;
  goModulesPreBuild = (flake.packages.x86_64-linux.choria.goArgs.overrideModAttrs { } { }).preBuild;

  # The images (not the loader beside them); eval-images.nix looks closer.
  images = lib.mapAttrs (_: i: i.imageArgs.config) (
    lib.filterAttrs (_: i: i ? imageArgs) flake.legacyPackages.x86_64-linux.images
  );

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
  # Each entry's key, which a module given as a bare path lacks.
  nixosModuleKeys = lib.mapAttrs (
    _: m: if builtins.isFunction m then (m { inherit pkgs; }).key or null else null
  ) flake.nixosModules;
}
// lib.optionalAttrs (scenario != null) { scenario = report (evaluate (scenario m)); }
