# Helpers shared by the Choria role modules; not a module itself.
#
# Every role renders its configuration the same way: `settings` (RFC 42) go
# to the Nix store, free of secrets; values that are secret or known only at
# run time come from files given by path, loaded with systemd's
# LoadCredential, and are merged in by an ExecStartPre script that writes the
# final file into the service's RuntimeDirectory. `service` builds that
# service, with its system user; the mk…Option functions and `settingOptions`
# declare the options the roles share.
{ lib, pkgs }:

let
  inherit (lib) types;

  # A setting path: "a.b.0.c" -> [ "a" "b" 0 "c" ] (numbers index lists).
  settingPath =
    name:
    map (c: if builtins.match "[0-9]+" c != null then lib.toInt c else c) (lib.splitString "." name);

  # systemd credential names: letters, digits, "_" and "-".
  credentialId = prefix: name: prefix + lib.replaceStrings [ "." "/" ] [ "_" "_" ] name;
in
rec {
  # Choria's configuration format: one `key = value` per line; booleans as
  # true/false, lists joined with commas (as for middleware_hosts).
  choriaFormat = {
    type =
      let
        atom = types.oneOf [
          types.bool
          types.int
          types.str
        ];
      in
      types.attrsOf (types.nullOr (types.either atom (types.listOf atom)));

    render =
      settings:
      let
        value =
          v:
          if builtins.isBool v then
            lib.boolToString v
          else if builtins.isList v then
            lib.concatMapStringsSep "," value v
          else
            toString v;
      in
      lib.generators.toKeyValue { mkKeyValue = k: v: "${k} = ${value v}"; } (
        lib.filterAttrs (_: v: v != null) settings
      );

    generate = name: settings: pkgs.writeText name (choriaFormat.render settings);
  };

  jsonFormat = pkgs.formats.json { };
  yamlFormat = pkgs.formats.yaml { };

  # Options every daemon role shares for values kept out of the store.
  fileOptions = {
    credentialFiles = lib.mkOption {
      type = types.attrsOf types.path;
      default = { };
      example = {
        "plugin.security.choria.seed_file" = "/etc/choria-broker/broker.seed";
      };
      description = ''
        Files the program reads by path (seeds, tokens, TLS keys and
        certificates), keyed by the setting that names them. Each is loaded
        with systemd's `LoadCredential`, so the service needs no access to
        where it is kept, and the setting is pointed at the loaded copy.
        Nested settings of YAML and JSON files are written with dots, list
        indices as numbers: `streams.0.source_choria.seed_file`.
      '';
    };

    secretFiles = lib.mkOption {
      type = types.attrsOf types.path;
      default = { };
      example = {
        "plugin.choria.network.system.password" = "/run/secrets/choria-system-password";
      };
      description = ''
        Settings whose value is the content of a file (a trailing newline
        removed), read when the service starts: passwords, tokens, or values
        known only at run time such as the issuer's public key. Loaded with
        `LoadCredential`; the value never enters the Nix store.
      '';
    };
  };

  # The entries of a setting -> file map whose file option is set: named
  # options such as `seedFile` fill credentialFiles and secretFiles so.
  givenFiles = lib.filterAttrs (_: file: file != null);

  # LoadCredential entries for one configuration file's credential and
  # secret files; prefix keeps two files of one service apart.
  loadCredentials =
    prefix: files:
    lib.mapAttrsToList (name: path: "${credentialId prefix name}:${path}") (
      files.credentialFiles // files.secretFiles // files.jsonFiles or { }
    );

  # A shell snippet writing a choria .conf to `output`: the store file, then
  # one line per file-backed setting (which `settings` then must not hold).
  renderChoria =
    {
      name,
      settings,
      files,
      output,
      prefix ? "",
    }:
    let
      fileKeys = lib.attrNames (files.credentialFiles // files.secretFiles);
      base = choriaFormat.generate name (removeAttrs settings fileKeys);
      secretLine =
        key: _:
        ''printf '%s = %s\n' ${lib.escapeShellArg key} "$(< "$CREDENTIALS_DIRECTORY/${credentialId prefix key}")"'';
      credentialLine =
        key: _:
        ''printf '%s = %s\n' ${lib.escapeShellArg key} "$CREDENTIALS_DIRECTORY/${credentialId prefix key}"'';
    in
    ''
      {
        cat ${base}
        ${lib.concatStringsSep "\n  " (
          lib.mapAttrsToList secretLine files.secretFiles
          ++ lib.mapAttrsToList credentialLine files.credentialFiles
        )}
      } > ${output}
    '';

  # A shell snippet writing JSON settings to `output`, with file-backed
  # values set by jq (`files.jsonFiles`: values parsed as JSON). JSON is also YAML (both YAML programs here read their
  # files with github.com/ghodss/yaml), so this serves the YAML roles too.
  renderJSON =
    {
      name,
      settings,
      files,
      output,
      prefix ? "",
    }:
    let
      base = jsonFormat.generate name settings;
      secretNames = lib.attrNames files.secretFiles;
      jqArgs = lib.imap0 (
        i: key: ''--rawfile s${toString i} "$CREDENTIALS_DIRECTORY/${credentialId prefix key}"''
      ) secretNames;
      secretSets = lib.imap0 (
        i: key: "setpath(${builtins.toJSON (settingPath key)}; $s${toString i} | rtrimstr(\"\\n\"))"
      ) secretNames;
      credentialSets = lib.mapAttrsToList (
        key: _:
        "setpath(${builtins.toJSON (settingPath key)}; $credentials + \"/${credentialId prefix key}\")"
      ) files.credentialFiles;
      jsonNames = lib.attrNames (files.jsonFiles or { });
      jsonArgs = lib.imap0 (
        i: key: ''--slurpfile j${toString i} "$CREDENTIALS_DIRECTORY/${credentialId prefix key}"''
      ) jsonNames;
      jsonSets = lib.imap0 (
        i: key: "setpath(${builtins.toJSON (settingPath key)}; $j${toString i}[0])"
      ) jsonNames;
      program = lib.concatStringsSep " | " ([ "." ] ++ secretSets ++ jsonSets ++ credentialSets);
    in
    ''
      ${lib.getExe pkgs.jq} --arg credentials "''${CREDENTIALS_DIRECTORY:-}" ${
        lib.concatStringsSep " " (jqArgs ++ jsonArgs)
      } \
        ${lib.escapeShellArg program} ${base} > ${output}
    '';

  # How a long-running role restarts after it died, as the namespace lab's
  # supervisor (internal/supervisor) restarts it: after 250 ms, the delay
  # doubling up to 30 s (RestartSteps, systemd 254), with no start limit to
  # leave a crashing service down for good. A broker killed with kill -9 is
  # back within a second rather than after systemd's usual 5 s.
  restartPolicy = {
    unitConfig.StartLimitIntervalSec = 0;
    serviceConfig = {
      Restart = "on-failure";
      RestartSec = "250ms";
      RestartSteps = 7;
      RestartMaxDelaySec = "30s";
    };
  };

  # The sandbox of every role that does not need root.
  hardening = {
    CapabilityBoundingSet = "";
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    NoNewPrivileges = true;
    PrivateDevices = true;
    PrivateTmp = true;
    ProcSubset = "pid";
    ProtectClock = true;
    ProtectControlGroups = true;
    ProtectHome = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectProc = "invisible";
    ProtectSystem = "strict";
    RemoveIPC = true;
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    UMask = "0077";
  };

  # A daemon role's service `name`, run as `cfg.user` (a system user and
  # group of that name, made when the defaults are kept): sandboxed by
  # `hardening`, started once the network is up, restarted on failure as
  # `restartPolicy` says, with
  # a state and a runtime directory of that name. Unless `cfg.configFile` is
  # set, `renderConfig` writes the configuration before it starts.
  # `serviceConfig` adds to or overrides what is set here.
  service =
    {
      name,
      description,
      cfg,
      execStart,
      renderConfig ? null,
      after ? [ ],
      loadCredential ? loadCredentials "" { inherit (cfg) credentialFiles secretFiles; },
      serviceConfig ? { },
    }:
    {
      systemd.services.${name} = {
        inherit description;
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ] ++ after;
        inherit (restartPolicy) unitConfig;

        serviceConfig =
          hardening
          // restartPolicy.serviceConfig
          // lib.optionalAttrs (renderConfig != null) {
            ExecStartPre = lib.optional (cfg.configFile == null) renderConfig;
          }
          // {
            ExecStart = execStart;
            User = cfg.user;
            Group = cfg.group;
            StateDirectory = name;
            StateDirectoryMode = "0750";
            RuntimeDirectory = name;
            RuntimeDirectoryMode = "0750";
            LoadCredential = loadCredential;
          }
          // serviceConfig;
      };

      users.users = lib.mkIf (cfg.user == name) {
        ${name} = {
          inherit description;
          home = "/var/lib/${name}";
          isSystemUser = true;
          group = cfg.group;
        };
      };
      users.groups = lib.mkIf (cfg.group == name) { ${name} = { }; };
    };

  userOptions = name: {
    user = lib.mkOption {
      type = types.str;
      default = name;
      description = "User account under which the service runs.";
    };
    group = lib.mkOption {
      type = types.str;
      default = name;
      description = "Group under which the service runs.";
    };
  };

  # A path option for a file outside the store, or null.
  mkFileOption =
    description:
    lib.mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/choria/file";
      inherit description;
    };

  # `settings` (RFC 42): freeform in `format`, with our defaults as the
  # declared `options`; the other arguments (description, example) go to
  # mkOption.
  mkSettingsOption =
    { format, options, ... }@args:
    lib.mkOption (
      removeAttrs args [
        "format"
        "options"
      ]
      // {
        default = { };
        type = types.submodule {
          freeformType = format.type;
          inherit options;
        };
      }
    );

  # Options of `settings` that several roles declare alike, by setting;
  # `loglevel` takes its default.
  settingOptions = {
    loglevel =
      default:
      lib.mkOption {
        type = types.str;
        inherit default;
        description = "Log level.";
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

    "plugin.security.provider" = lib.mkOption {
      type = types.str;
      default = "choria";
      description = "Security provider.";
    };

    "plugin.security.issuer.names" = lib.mkOption {
      type = types.str;
      default = "choria";
      description = "Name of the organisation issuer whose tokens are trusted.";
    };
  };

  # `configFile`: a complete configuration to use instead of the one
  # rendered from `settings`; the arguments (description, example) go to
  # mkOption.
  mkConfigFileOption =
    args:
    lib.mkOption (
      {
        type = types.nullOr types.path;
        default = null;
      }
      // args
    );

  # `openFirewall`, for the ports `what` names.
  mkOpenFirewallOption =
    what:
    lib.mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open ${what} in the firewall.";
    };
}
