# The Choria Server: `choria server run`, the managed node with its agents
# and autonomous agents. It runs as root: its agents manage the host.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.choria-server;
  common = import ./lib.nix { inherit lib pkgs; };
  inherit (lib) types;

  # go-choria is built with build.ProvisionJWTFile=/etc/choria/provisioning.jwt:
  # a server with no configuration at `provisionedConfig` provisions itself
  # from that token, and the provisioner then writes that configuration.
  provisioningToken = "/etc/choria/provisioning.jwt";
  provisionedConfig = "/etc/choria/server.conf";
  runtimeConfig = "/run/choria-server/server.conf";

  configPath =
    if cfg.provisioning.enable then
      provisionedConfig
    else if cfg.configFile != null then
      cfg.configFile
    else
      runtimeConfig;

  renderConfig = pkgs.writeShellScript "choria-server-config" (
    common.renderChoria {
      name = "server.conf";
      inherit (cfg) settings;
      files = { inherit (cfg) credentialFiles secretFiles; };
      output = runtimeConfig;
    }
  );

  installToken = pkgs.writeShellScript "choria-server-provisioning-token" ''
    install -D -m 0600 "$CREDENTIALS_DIRECTORY/provisioning-token" ${provisioningToken}
  '';

  issuerKey = "plugin.security.issuer.${cfg.settings."plugin.security.issuer.names"}.public";
in
{
  options.services.choria-server = {
    enable = lib.mkEnableOption "the Choria Server";

    package = lib.mkPackageOption pkgs "choria" { };

    settings = common.mkSettingsOption {
      format = common.choriaFormat;
      description = ''
        Server configuration, written as `key = value` lines (see
        <https://choria.io/docs/configuration/>). Not used when
        {option}`provisioning.enable` is set: the provisioner writes the
        configuration then.
      '';
      options = {
        identity = lib.mkOption {
          type = types.str;
          default = config.networking.fqdnOrHostName;
          defaultText = lib.literalExpression "config.networking.fqdnOrHostName";
          description = "The server's identity; it must match the name in its token.";
        };
        loglevel = common.settingOptions.loglevel "info";
        inherit (common.settingOptions) "plugin.security.provider" "plugin.security.issuer.names";
        "plugin.choria.machine.store" = lib.mkOption {
          type = types.str;
          default = "/etc/choria/machine";
          description = "Directory of autonomous agents.";
        };
        libdir = lib.mkOption {
          type = types.str;
          default = "/var/lib/choria/plugins";
          description = "Plugin directory; external agents go in its `mcollective/agent`.";
        };
      };
    };

    inherit (common.fileOptions) credentialFiles secretFiles;

    seedFile = common.mkFileOption "The server's ed25519 seed (`plugin.security.choria.seed_file`).";
    tokenFile = common.mkFileOption "The server's JWT (`plugin.security.choria.token_file`).";
    issuerPublicKeyFile = common.mkFileOption "File holding the issuer's public key (hex), read at start.";

    provisioning = {
      enable = lib.mkEnableOption ''
        provisioning: the server starts with only a provisioning token and
        is configured by choria-provisioner, which writes
        `/etc/choria/server.conf`, `server.jwt` and `server.seed`'';
      tokenFile = lib.mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/run/secrets/choria/provisioning.jwt";
        description = ''
          The provisioning token, installed as `/etc/choria/provisioning.jwt`
          (the path this build of choria looks for) when the service starts.
          Null when something else puts it there.
        '';
      };
    };

    configFile = common.mkConfigFileOption {
      description = "A complete configuration to use instead of {option}`settings`.";
    };

    extraPackages = lib.mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = lib.literalExpression "[ pkgs.monitoring-plugins ]";
      description = "Programs on the PATH of agents and autonomous agents (exec and nagios watchers).";
    };
  };

  config = lib.mkIf cfg.enable {
    services.choria-server = lib.mkIf (!cfg.provisioning.enable) {
      credentialFiles = common.givenFiles {
        "plugin.security.choria.seed_file" = cfg.seedFile;
        "plugin.security.choria.token_file" = cfg.tokenFile;
      };
      secretFiles = common.givenFiles { ${issuerKey} = cfg.issuerPublicKeyFile; };
    };

    environment.systemPackages = [ cfg.package ];

    systemd.tmpfiles.rules = [
      "d /etc/choria 0755 root root -"
      # The server logs errors until its agent directory exists.
      "d ${cfg.settings.libdir}/mcollective/agent 0755 root root -"
      "d /var/spool/choria 0700 root root -"
    ];

    systemd.services.choria-server = {
      description = "Choria Server";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      path = cfg.extraPackages;
      inherit (common.restartPolicy) unitConfig;

      serviceConfig = common.restartPolicy.serviceConfig // {
        ExecStartPre =
          lib.optional (cfg.provisioning.enable && cfg.provisioning.tokenFile != null) installToken
          ++ lib.optional (!cfg.provisioning.enable && cfg.configFile == null) renderConfig;
        # By absolute path: after provisioning the server re-executes its
        # own argv[0].
        ExecStart = "${lib.getExe cfg.package} server run --config ${configPath}";
        Restart = "always";
        StateDirectory = "choria";
        RuntimeDirectory = "choria-server";
        RuntimeDirectoryMode = "0700";
        LoadCredential =
          if cfg.provisioning.enable then
            lib.optional (cfg.provisioning.tokenFile != null) "provisioning-token:${cfg.provisioning.tokenFile}"
          else
            common.loadCredentials "" { inherit (cfg) credentialFiles secretFiles; };
        # Root, unconfined beyond this: agents install packages, manage
        # services and files anywhere on the host.
        PrivateTmp = true;
        UMask = "0022";
      };
    };
  };
}
