# choria-provisioner: configures unprovisioned Choria servers through a
# helper program (here usually choria-provision-helper).
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.choria-provisioner;
  common = import ./lib.nix { inherit lib pkgs; };
  inherit (lib) types;

  runtimeConfig = "/run/choria-provisioner/provisioner.yaml";
  runtimeChoriaConfig = "/run/choria-provisioner/choria.cfg";
  configPath = lib.defaultTo runtimeConfig cfg.configFile;
  choriaConfigPath = lib.defaultTo runtimeChoriaConfig cfg.choriaConfigFile;

  renderConfig = pkgs.writeShellScript "choria-provisioner-config" (
    lib.optionalString (cfg.configFile == null) (
      common.renderJSON {
        name = "provisioner.yaml";
        inherit (cfg) settings;
        files = { inherit (cfg) credentialFiles secretFiles; };
        output = runtimeConfig;
      }
    )
    + lib.optionalString (cfg.choriaConfigFile == null) (
      common.renderChoria {
        name = "choria.cfg";
        settings = cfg.choriaSettings;
        files = cfg.choria;
        output = runtimeChoriaConfig;
        prefix = "choria-";
      }
    )
  );
in
{
  options.services.choria-provisioner = {
    enable = lib.mkEnableOption "the Choria Provisioner";

    package = lib.mkPackageOption pkgs "choria-provisioner" { };

    settings = common.mkSettingsOption {
      format = common.yamlFormat;
      description = ''
        Provisioner configuration (YAML; see the provisioner's README). It
        is written as JSON, which is YAML and which the provisioner reads
        the same way. Secrets belong in {option}`secretFiles` and
        {option}`credentialFiles`, or the options that fill them.
      '';
      options = {
        workers = lib.mkOption {
          type = types.ints.positive;
          default = 4;
          description = "How many servers are provisioned at once.";
        };
        interval = lib.mkOption {
          type = types.str;
          default = "1m";
          description = "How often unprovisioned servers are discovered; at least one minute.";
        };
        inherit (common.settingOptions) logfile;
        loglevel = common.settingOptions.loglevel "info";
        helper = lib.mkOption {
          type = types.str;
          example = "/run/current-system/sw/bin/choria-provision-helper --config /etc/choria-provisioner/helper.json";
          description = ''
            Command run for each server, split shell-style; it reads the
            request on stdin and prints the configuration. Give an
            absolute path.
          '';
        };
        features = lib.mkOption {
          type = types.attrsOf types.bool;
          default = {
            jwt = true;
            ed25519 = true;
          };
          description = "Provisioning features.";
        };
      };
    };

    inherit (common.fileOptions) credentialFiles secretFiles;

    tokenFile = common.mkFileOption "The provisioning token shared with servers (`token`).";
    brokerPasswordFile = common.mkFileOption "Password for the broker's provisioning account (`broker_provisioning_password`).";
    signingSeedFile = common.mkFileOption "The provisioner signer's seed, signing server tokens (`jwt_signing_key`).";
    signingTokenFile = common.mkFileOption "The provisioner signer's JWT (`jwt_signing_token`).";
    issuerPublicKeyFile = common.mkFileOption "File holding the issuer's public key (hex), read at start (`jwt_verify_cert`).";

    choriaSettings = common.mkSettingsOption {
      format = common.choriaFormat;
      description = "The provisioner's Choria client configuration (`--choria-config`), `key = value` lines.";
      example = {
        "plugin.choria.middleware_hosts" = "broker.example.net:4222";
      };
      options = {
        identity = lib.mkOption {
          type = types.str;
          default = "provisioner_signer";
          description = "Identity; it must match the caller in the signer's token.";
        };
        loglevel = common.settingOptions.loglevel "warn";
        inherit (common.settingOptions) "plugin.security.provider";
      };
    };

    choria = common.fileOptions;

    configFile = common.mkConfigFileOption {
      description = "A complete provisioner configuration to use instead of {option}`settings`, readable by {option}`user`.";
    };

    choriaConfigFile = common.mkConfigFileOption {
      description = "A complete Choria client configuration to use instead of {option}`choriaSettings`.";
    };

    openFirewall = common.mkOpenFirewallOption "`monitor_port` (when set)";
  }
  // common.userOptions "choria-provisioner";

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      (common.service {
        name = "choria-provisioner";
        description = "Choria Provisioner";
        inherit cfg;
        execStart = lib.escapeShellArgs [
          (lib.getExe cfg.package)
          "--config"
          configPath
          "--choria-config"
          choriaConfigPath
        ];
        after = [ "choria-broker.service" ];
        loadCredential =
          common.loadCredentials "" { inherit (cfg) credentialFiles secretFiles; }
          ++ common.loadCredentials "choria-" cfg.choria;
        # Renders whichever of the two files is not given.
        serviceConfig.ExecStartPre = renderConfig;
      })
      {
        services.choria-provisioner = {
          credentialFiles = common.givenFiles {
            jwt_signing_key = cfg.signingSeedFile;
            jwt_signing_token = cfg.signingTokenFile;
          };
          secretFiles = common.givenFiles {
            token = cfg.tokenFile;
            broker_provisioning_password = cfg.brokerPasswordFile;
            jwt_verify_cert = cfg.issuerPublicKeyFile;
          };
          # The provisioner's Choria identity is its signer.
          choria.credentialFiles = common.givenFiles {
            "plugin.security.choria.seed_file" = cfg.signingSeedFile;
            "plugin.security.choria.token_file" = cfg.signingTokenFile;
          };
        };

        # "could not determine client identity" without it.
        systemd.services.choria-provisioner.environment.USER = cfg.user;

        networking.firewall.allowedTCPPorts = lib.mkIf (cfg.openFirewall && cfg.settings ? monitor_port) [
          cfg.settings.monitor_port
        ];
      }
    ]
  );
}
