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
  configPath = if cfg.configFile != null then cfg.configFile else runtimeConfig;

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
      files = {
        inherit (cfg) credentialFiles secretFiles;
        jsonFiles = lib.optionalAttrs (cfg.usersFile != null) {
          "userlist_authenticator.users" = cfg.usersFile;
        };
      };
      output = runtimeConfig;
    }
  );
in
{
  options.services.choria-aaasvc = {
    enable = lib.mkEnableOption "the Choria AAA service";

    package = lib.mkPackageOption pkgs "aaasvc" { };

    settings = lib.mkOption {
      default = { };
      description = ''
        aaasvc configuration (JSON; see <https://choria-io.github.io/aaasvc/>).
        `choria_config` is set from {option}`choriaSettings`. The user list
        (bcrypt hashes) and every key belong in {option}`credentialFiles`
        and {option}`secretFiles`, or the options that fill them.
      '';
      type = types.submodule {
        freeformType = common.jsonFormat.type;
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
          logfile = lib.mkOption {
            type = types.str;
            default = "stdout";
            description = ''
              Log file, or one of the keywords `stdout`, `stderr` and `discard`;
              the default goes to the journal. Not `/dev/stdout`: go-choria opens
              any other value as a file, which fails on the journal's socket.
            '';
          };
          loglevel = lib.mkOption {
            type = types.str;
            default = "info";
            description = "Log level.";
          };
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

    choriaSettings = lib.mkOption {
      default = { };
      description = "aaasvc's Choria configuration (`choria_config`), `key = value` lines.";
      type = types.submodule {
        freeformType = common.choriaFormat.type;
        options = {
          identity = lib.mkOption {
            type = types.str;
            default = config.networking.fqdnOrHostName;
            defaultText = lib.literalExpression "config.networking.fqdnOrHostName";
            description = "Identity; it must match the name in the signing service's token.";
          };
          loglevel = lib.mkOption {
            type = types.str;
            default = "warn";
            description = "Log level.";
          };
          "plugin.security.provider" = lib.mkOption {
            type = types.str;
            default = "choria";
            description = "Security provider.";
          };
        };
      };
    };

    choria = common.fileOptions // {
      seedFile = common.mkFileOption "The signing service's seed (`plugin.security.choria.seed_file`).";
      tokenFile = common.mkFileOption "The signing service's server JWT (`plugin.security.choria.token_file`).";
    };

    configFile = lib.mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/aaasvc/aaa.conf";
      description = ''
        A complete configuration to use instead of {option}`settings`, read
        where it is by {option}`user`, with every file it names.
      '';
    };

    openFirewall = lib.mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open the login port in the firewall.";
    };
  }
  // common.userOptions "aaasvc";

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        services.choria-aaasvc = {
          credentialFiles = lib.mkMerge [
            (lib.mkIf (cfg.tlsCertificateFile != null) { tls_certificate = cfg.tlsCertificateFile; })
            (lib.mkIf (cfg.tlsKeyFile != null) { tls_key = cfg.tlsKeyFile; })
            (lib.mkIf (cfg.chainSignerSeedFile != null) {
              "userlist_authenticator.signing_key" = cfg.chainSignerSeedFile;
            })
            (lib.mkIf (cfg.chainSignerTokenFile != null) {
              "userlist_authenticator.signing_token" = cfg.chainSignerTokenFile;
            })
            (lib.mkIf (cfg.chainSignerPublicKeyFile != null) {
              "basicjwt_signer.signing_certificate" = cfg.chainSignerPublicKeyFile;
            })
            (lib.mkIf (cfg.requestSignerSeedFile != null) {
              "basicjwt_signer.signing_seed" = cfg.requestSignerSeedFile;
            })
            (lib.mkIf (cfg.requestSignerTokenFile != null) {
              "basicjwt_signer.signing_token" = cfg.requestSignerTokenFile;
            })
          ];
          choria.credentialFiles = lib.mkMerge [
            (lib.mkIf (cfg.choria.seedFile != null) {
              "plugin.security.choria.seed_file" = cfg.choria.seedFile;
            })
            (lib.mkIf (cfg.choria.tokenFile != null) {
              "plugin.security.choria.token_file" = cfg.choria.tokenFile;
            })
          ];
        };

        systemd.services.aaasvc = {
          description = "Choria AAA service";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [
            "network-online.target"
            "choria-broker.service"
          ];

          serviceConfig = common.hardening // {
            ExecStartPre = lib.optional (cfg.configFile == null) renderConfig;
            ExecStart = "${lib.getExe cfg.package} run --config ${configPath}";
            Restart = "on-failure";
            # systemd's default 100 ms reaches its start limit in half a second
            RestartSec = "5s";
            User = cfg.user;
            Group = cfg.group;
            StateDirectory = "aaasvc";
            StateDirectoryMode = "0750";
            RuntimeDirectory = "aaasvc";
            RuntimeDirectoryMode = "0750";
            LoadCredential =
              common.loadCredentials "" {
                inherit (cfg) credentialFiles secretFiles;
                jsonFiles = lib.optionalAttrs (cfg.usersFile != null) {
                  "userlist_authenticator.users" = cfg.usersFile;
                };
              }
              ++ common.loadCredentials "choria-" {
                inherit (cfg.choria) credentialFiles secretFiles;
              };
          };
        };

        networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.settings.port ];
      }
      (common.systemUser {
        inherit cfg;
        name = "aaasvc";
        description = "Choria AAA service";
        home = "/var/lib/aaasvc";
      })
    ]
  );
}
