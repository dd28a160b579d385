# The Choria Broker: `choria broker run`, the NATS-based network with
# Choria Streams, the provisioning listener and the registration adapter.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.choria-broker;
  common = import ./lib.nix { inherit lib pkgs; };
  inherit (lib) types;

  runtimeConfig = "/run/choria-broker/broker.conf";
  configPath = lib.defaultTo runtimeConfig cfg.configFile;

  renderConfig = pkgs.writeShellScript "choria-broker-config" (
    common.renderChoria {
      name = "broker.conf";
      inherit (cfg) settings;
      files = { inherit (cfg) credentialFiles secretFiles; };
      output = runtimeConfig;
    }
  );

  issuerKey = "plugin.security.issuer.${cfg.settings."plugin.security.issuer.names"}.public";
in
{
  options.services.choria-broker = {
    enable = lib.mkEnableOption "the Choria Broker";

    package = lib.mkPackageOption pkgs "choria" { };

    settings = common.mkSettingsOption {
      format = common.choriaFormat;
      description = ''
        Broker configuration, written as `key = value` lines. See
        <https://choria.io/docs/configuration/broker/> and
        `choria tool config`. Secrets belong in {option}`secretFiles` and
        {option}`credentialFiles`, or the options that fill them.
      '';
      example = {
        "plugin.choria.network.client_hosts" = [ "198.18.0.0/15" ];
      };
      options = {
        identity = lib.mkOption {
          type = types.str;
          default = config.networking.fqdnOrHostName;
          defaultText = lib.literalExpression "config.networking.fqdnOrHostName";
          description = "The broker's identity; it must match the name in its token.";
        };
        loglevel = lib.mkOption {
          type = types.enum [
            "debug"
            "info"
            "warn"
            "error"
            "fatal"
          ];
          default = "info";
          description = "Log level.";
        };
        "plugin.choria.broker_network" = lib.mkOption {
          type = types.bool;
          default = true;
          description = "Whether to run the network broker.";
        };
        "plugin.choria.network.client_port" = lib.mkOption {
          type = types.port;
          default = 4222;
          description = "Port for servers and clients.";
        };
        "plugin.choria.network.peer_port" = lib.mkOption {
          type = types.port;
          default = 5222;
          description = "Port for other brokers of a cluster.";
        };
        "plugin.choria.stats_port" = lib.mkOption {
          type = types.port;
          default = 8222;
          description = "Port of the monitoring (statistics) endpoint.";
        };
        "plugin.choria.network.stream.store" = lib.mkOption {
          type = types.str;
          default = "/var/lib/choria-broker/streams";
          description = "Where Choria Streams keep their data; setting it enables Streams.";
        };
        "plugin.security.provider" = lib.mkOption {
          type = types.str;
          default = "choria";
          description = "Security provider; `choria` uses ed25519 seeds and JWTs.";
        };
        inherit (common.settingOptions) "plugin.security.issuer.names";
      };
    };

    cluster = {
      peers = lib.mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "nats://broker1.example.net:5222"
          "nats://broker2.example.net:5222"
          "nats://broker3.example.net:5222"
        ];
        description = ''
          Every broker of this broker's cluster, this one included (NATS
          ignores a route to itself, so all brokers can share one list), as
          `nats://HOST:PORT` with each one's
          {option}`settings."plugin.choria.network.peer_port"`
          (`plugin.choria.network.peers`): NATS routes between them carry the
          fleet's traffic, and Choria Streams are replicated over them.
          Empty for a single broker.

          The routes are not authenticated: go-choria 0.30.2 requires
          `plugin.choria.network.peer_user` and `peer_password` of the routes
          it accepts but drops the user information of the peers it dials,
          so setting them refuses every route. Let only the cluster's
          brokers reach the peer port.
        '';
      };

      streamReplicas = lib.mkOption {
        type = types.ints.between (-1) 5;
        default = if cfg.cluster.peers == [ ] then 1 else -1;
        defaultText = lib.literalExpression "if cluster.peers == [ ] then 1 else -1";
        description = ''
          Replicas of the streams the broker makes for itself at start
          (lifecycle events, autonomous agent events, stream advisories,
          leader election, executor: the
          `plugin.choria.network.stream.*_replicas` settings). With a number
          the broker makes them at once, which fails when its cluster has no
          JetStream leader yet, as when its brokers start together, and is not
          tried again; -1 waits 10-70 s and gives them one replica per
          {option}`cluster.peers` entry.
        '';
      };
    };

    inherit (common.fileOptions) credentialFiles secretFiles;

    seedFile = common.mkFileOption "The broker's ed25519 seed (`plugin.security.choria.seed_file`).";
    tokenFile = common.mkFileOption "The broker's server JWT (`plugin.security.choria.token_file`).";
    tlsCertificateFile = common.mkFileOption "TLS certificate (`plugin.security.choria.certificate`).";
    tlsKeyFile = common.mkFileOption "TLS private key (`plugin.security.choria.key`).";
    issuerPublicKeyFile = common.mkFileOption ''
      File holding the issuer's public key (hex), read at start: for an
      issuer made at run time. A key known in advance can go in
      {option}`settings` as `plugin.security.issuer.<name>.public`.
    '';
    systemPasswordFile = common.mkFileOption "Password of the broker's system account (`plugin.choria.network.system.password`).";
    provisioningPasswordFile = common.mkFileOption "Password the provisioner connects with (`plugin.choria.network.provisioning.client_password`).";

    configFile = common.mkConfigFileOption {
      example = "/etc/choria-broker/broker.conf";
      description = ''
        A complete configuration to use instead of {option}`settings`, read
        by the service user where it is (for example one written by
        `choria-bootstrap`). It and every file it names must be readable by
        {option}`user`.
      '';
    };

    openFirewall = common.mkOpenFirewallOption "the client and peer ports";
  }
  // common.userOptions "choria-broker";

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      (common.service {
        name = "choria-broker";
        description = "Choria Broker";
        inherit cfg renderConfig;
        execStart = "${lib.getExe cfg.package} broker run --config ${configPath}";
        serviceConfig = {
          # Streams keep two files open per stream, NATS one per client.
          LimitNOFILE = 65536;
          # The embedded NATS server lists the interfaces (a netlink
          # socket) to advertise its addresses when it listens on all.
          RestrictAddressFamilies = common.hardening.RestrictAddressFamilies ++ [ "AF_NETLINK" ];
        };
      })
      {
        services.choria-broker = {
          settings = {
            "plugin.choria.network.peers" = lib.mkIf (cfg.cluster.peers != [ ]) cfg.cluster.peers;
          }
          // lib.genAttrs (map (s: "plugin.choria.network.stream.${s}_replicas") [
            "event"
            "machine"
            "advisory"
            "leader_election"
            "executor"
          ]) (_: lib.mkDefault cfg.cluster.streamReplicas);
          credentialFiles = common.givenFiles {
            "plugin.security.choria.seed_file" = cfg.seedFile;
            "plugin.security.choria.token_file" = cfg.tokenFile;
            "plugin.security.choria.certificate" = cfg.tlsCertificateFile;
            "plugin.security.choria.key" = cfg.tlsKeyFile;
          };
          secretFiles = common.givenFiles {
            ${issuerKey} = cfg.issuerPublicKeyFile;
            "plugin.choria.network.system.password" = cfg.systemPasswordFile;
            "plugin.choria.network.provisioning.client_password" = cfg.provisioningPasswordFile;
          };
        };

        networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [
          cfg.settings."plugin.choria.network.client_port"
          cfg.settings."plugin.choria.network.peer_port"
        ];
      }
    ]
  );
}
