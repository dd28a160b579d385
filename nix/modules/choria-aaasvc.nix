# aaasvc: Choria's authentication (login), authorization (OPA) and audit
# service, with the request signer clients use through Choria Services.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.choria-aaasvc;
  common = import ./lib.nix { inherit lib pkgs; };
  inherit (lib) types;

  runtimeConfig = "/run/aaasvc/aaa.conf";
  runtimeChoriaConfig = "/run/aaasvc/choria.conf";
  configPath = lib.defaultTo runtimeConfig cfg.configFile;

  # aaa.conf's files; the user list is JSON, set into it as it is.
  files = {
    inherit (cfg) credentialFiles secretFiles;
    jsonFiles = common.givenFiles { "userlist_authenticator.users" = cfg.usersFile; };
  };

  renderConfig = pkgs.writeShellScript "aaasvc-config" (
    common.renderChoria {
      name = "aaa-choria.conf";
      settings = cfg.choriaSettings;
      files = cfg.choria;
      output = runtimeChoriaConfig;
      prefix = "choria-";
    }
    + common.renderJSON {
      name = "aaa.conf";
      settings = cfg.settings // {
        choria_config = runtimeChoriaConfig;
      };
      inherit files;
      output = runtimeConfig;
    }
  );
in
{
  options.services.choria-aaasvc = {
    enable = lib.mkEnableOption "the Choria AAA service";

    package = lib.mkPackageOption pkgs "aaasvc" { };

    settings = common.mkSettingsOption {
      format = common.jsonFormat;
      description = ''
        aaasvc configuration (JSON; see <https://choria-io.github.io/aaasvc/>).
        `choria_config` is set from {option}`choriaSettings`. The user list
        (bcrypt hashes) and every key belong in {option}`credentialFiles`
        and {option}`secretFiles`, or the options that fill them.
      '';
      options = {
        port = lib.mkOption {
          type = types.port;
          default = 8080;
          description = "HTTPS port of the login service.";
        };
        monitor_port = lib.mkOption {
          type = types.port;
          default = 8081;
          description = "Port of the Prometheus metrics endpoint.";
        };
        inherit (common.settingOptions) logfile;
        loglevel = common.settingOptions.loglevel "info";
        authenticator = lib.mkOption {
          type = types.str;
          default = "userlist";
          description = "Authenticator.";
        };
        authorizer = lib.mkOption {
          type = types.str;
          default = "opa";
          description = "Authorizer.";
        };
        signer = lib.mkOption {
          type = types.str;
          default = "basicjwt";
          description = "Request signer.";
        };
        auditors = lib.mkOption {
          type = types.listOf types.str;
          default = [ "logfile" ];
          description = "Auditors.";
        };
        logfile_auditor = lib.mkOption {
          type = common.jsonFormat.type;
          default = {
            logfile = "/var/lib/aaasvc/audit.json";
          };
          description = "Settings of the log file auditor.";
        };
      };
    };

    inherit (common.fileOptions) credentialFiles secretFiles;

    usersFile = common.mkFileOption ''
      JSON file holding the list of users (`userlist_authenticator.users`:
      username, bcrypt password hash, broker permissions, OPA policy file),
      read at start.
    '';
    tlsCertificateFile = common.mkFileOption "TLS certificate of the login service (`tls_certificate`).";
    tlsKeyFile = common.mkFileOption "TLS private key of the login service (`tls_key`).";
    chainSignerSeedFile = common.mkFileOption "Seed signing user logins (`userlist_authenticator.signing_key`).";
    chainSignerTokenFile = common.mkFileOption "JWT of the login signer (`userlist_authenticator.signing_token`).";
    chainSignerPublicKeyFile = common.mkFileOption "Public key of the login signer (`basicjwt_signer.signing_certificate`).";
    requestSignerSeedFile = common.mkFileOption "Seed signing requests (`basicjwt_signer.signing_seed`).";
    requestSignerTokenFile = common.mkFileOption "JWT of the request signer (`basicjwt_signer.signing_token`).";

    choriaSettings = common.mkSettingsOption {
      format = common.choriaFormat;
      description = "aaasvc's Choria configuration (`choria_config`), `key = value` lines.";
      options = {
        identity = lib.mkOption {
          type = types.str;
          default = config.networking.fqdnOrHostName;
          defaultText = lib.literalExpression "config.networking.fqdnOrHostName";
          description = "Identity; it must match the name in the signing service's token.";
        };
        loglevel = common.settingOptions.loglevel "warn";
        inherit (common.settingOptions) "plugin.security.provider";
      };
    };

    choria = common.fileOptions // {
      seedFile = common.mkFileOption "The signing service's seed (`plugin.security.choria.seed_file`).";
      tokenFile = common.mkFileOption "The signing service's server JWT (`plugin.security.choria.token_file`).";
    };

    configFile = common.mkConfigFileOption {
      example = "/etc/aaasvc/aaa.conf";
      description = ''
        A complete configuration to use instead of {option}`settings`, read
        where it is by {option}`user`, with every file it names.
      '';
    };

    openFirewall = common.mkOpenFirewallOption "the login port";
  }
  // common.userOptions "aaasvc";

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      (common.service {
        name = "aaasvc";
        description = "Choria AAA service";
        inherit cfg renderConfig;
        execStart = "${lib.getExe cfg.package} run --config ${configPath}";
        after = [ "choria-broker.service" ];
        loadCredential = common.loadCredentials "" files ++ common.loadCredentials "choria-" cfg.choria;
      })
      {
        services.choria-aaasvc = {
          credentialFiles = common.givenFiles {
            tls_certificate = cfg.tlsCertificateFile;
            tls_key = cfg.tlsKeyFile;
            "userlist_authenticator.signing_key" = cfg.chainSignerSeedFile;
            "userlist_authenticator.signing_token" = cfg.chainSignerTokenFile;
            "basicjwt_signer.signing_certificate" = cfg.chainSignerPublicKeyFile;
            "basicjwt_signer.signing_seed" = cfg.requestSignerSeedFile;
            "basicjwt_signer.signing_token" = cfg.requestSignerTokenFile;
          };
          choria.credentialFiles = common.givenFiles {
            "plugin.security.choria.seed_file" = cfg.choria.seedFile;
            "plugin.security.choria.token_file" = cfg.choria.tokenFile;
          };
        };

        networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.settings.port ];
      }
    ]
  );
}
