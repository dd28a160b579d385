# Choria Stream Replicator: copies JetStream streams (here the broker's
# registration stream) to another NATS system.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.choria-stream-replicator;
  common = import ./lib.nix { inherit lib pkgs; };
  inherit (lib) types;

  runtimeConfig = "/run/stream-replicator/sr.yaml";
  configPath = lib.defaultTo runtimeConfig cfg.configFile;

  renderConfig = pkgs.writeShellScript "stream-replicator-config" (
    common.renderJSON {
      name = "sr.yaml";
      inherit (cfg) settings;
      files = { inherit (cfg) credentialFiles secretFiles; };
      output = runtimeConfig;
    }
  );
in
{
  options.services.choria-stream-replicator = {
    enable = lib.mkEnableOption "the Choria Stream Replicator";

    package = lib.mkPackageOption pkgs "stream-replicator" { };

    settings = common.mkSettingsOption {
      format = common.yamlFormat;
      description = ''
        Replicator configuration (YAML; see
        <https://github.com/choria-io/stream-replicator>), written as JSON,
        which is YAML and which the replicator reads the same way. The
        Choria seed and JWT of each stream and of the heartbeats are files
        the replicator reads by path: give them in {option}`credentialFiles`,
        for example `streams.0.source_choria.seed_file`.
      '';
      example = lib.literalExpression ''
        {
          name = "LAB";
          streams = [
            {
              stream = "CHORIA_REGISTRATION";
              source_url = "nats://broker.example.net:4222";
              target_url = "nats://nats.example.net:4222";
              source_choria.collective = "choria";
            }
          ];
        }
      '';
      options = {
        loglevel = common.settingOptions.loglevel "info";
        state_store = lib.mkOption {
          type = types.str;
          default = "/var/lib/stream-replicator";
          description = "Directory where replication state is kept.";
        };
      };
    };

    inherit (common.fileOptions) credentialFiles secretFiles;

    configFile = common.mkConfigFileOption {
      example = "/etc/stream-replicator/sr.yaml";
      description = ''
        A complete configuration to use instead of {option}`settings`, read
        where it is by {option}`user`, with every file it names.
      '';
    };

    openFirewall = common.mkOpenFirewallOption "`monitor_port` (when set)";
  }
  // common.userOptions "stream-replicator";

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      (common.service {
        name = "stream-replicator";
        description = "Choria Stream Replicator";
        inherit cfg renderConfig;
        execStart = "${lib.getExe cfg.package} replicate --config ${configPath}";
        after = [
          "choria-broker.service"
          "nats.service"
        ];
      })
      {
        networking.firewall.allowedTCPPorts = lib.mkIf (cfg.openFirewall && cfg.settings ? monitor_port) [
          cfg.settings.monitor_port
        ];
      }
    ]
  );
}
