# The Choria client: the `choria` program and /etc/choria/client.conf.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.programs.choria;
  common = import ./lib.nix { inherit lib pkgs; };
  inherit (lib) types;
in
{
  options.programs.choria = {
    enable = lib.mkEnableOption "the Choria client";

    package = lib.mkPackageOption pkgs "choria" { };

    settings = common.mkSettingsOption {
      format = common.choriaFormat;
      description = ''
        Client configuration, `/etc/choria/client.conf`, as `key = value`
        lines. It is world-readable in the Nix store: put no password here
        (the broker's system account password, if needed, belongs in a
        user's own `~/.choriarc` or in {option}`configFile`).
      '';
      example = {
        "plugin.choria.middleware_hosts" = "broker.example.net:4222";
        "plugin.login.aaasvc.login.url" = "https://aaa.example.net:8080/choria/v1/login";
        "plugin.choria.security.request_signer.service" = true;
      };
      options = {
        loglevel = common.settingOptions.loglevel "warn";
        inherit (common.settingOptions) "plugin.security.provider";
        "plugin.security.choria.token_file" = lib.mkOption {
          type = types.str;
          default = "~/.config/choria/client.jwt";
          description = "Where each user's login token is kept (`choria login` writes it).";
        };
        "plugin.security.choria.seed_file" = lib.mkOption {
          type = types.str;
          default = "~/.config/choria/client.key";
          description = "Where each user's seed is kept.";
        };
      };
    };

    configFile = common.mkConfigFileOption {
      example = "/var/lib/choria-lab/credentials/client/client.conf";
      description = ''
        A configuration kept outside the store (for example written by
        `choria-bootstrap`); `/etc/choria/client.conf` is then a symbolic
        link to it and {option}`settings` is not used.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];

    environment.etc."choria/client.conf".source =
      if cfg.configFile != null then
        cfg.configFile
      else
        common.choriaFormat.generate "client.conf" cfg.settings;
  };
}
