# A static web server for Choria plugin archives (what the reference serves
# from plugins.choria.local): servers' external agents machines and plugin
# managers download from it. choria-plugins-server lists directories, hides
# dot files and never leaves its root, in every backend alike.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.choria-plugins-webserver;
  common = import ./lib.nix { inherit lib pkgs; };
  inherit (lib) types;
in
{
  options.services.choria-plugins-webserver = {
    enable = lib.mkEnableOption "a web server for Choria plugin archives";

    package = lib.mkPackageOption pkgs "choria-reference" {
      extraDescription = ''
        It provides `choria-plugins-server`, the server the namespace lab
        and the OCI image run too.
      '';
    };

    root = lib.mkOption {
      type = types.path;
      default = "/var/lib/choria-plugins";
      example = lib.literalExpression "pkgs.linkFarm \"plugins\" [ ... ]";
      description = ''
        Directory served: plugin archives and their `SHA256SUMS`. The
        default is the service's state directory, to be filled at run time;
        a store path makes the served set part of the system.
      '';
    };

    listenAddress = lib.mkOption {
      type = types.str;
      default = "0.0.0.0";
      description = "Address to listen on (an IPv6 address in brackets).";
    };

    port = lib.mkOption {
      type = types.port;
      default = 80;
      description = "Port to listen on.";
    };

    openFirewall = common.mkOpenFirewallOption "{option}`port`";
  };

  config = lib.mkIf cfg.enable {
    systemd.services.choria-plugins-webserver = {
      description = "Choria plugin archives web server";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      inherit (common.restartPolicy) unitConfig;

      serviceConfig = common.hardening // common.restartPolicy.serviceConfig // {
        ExecStart = lib.escapeShellArgs [
          (lib.getExe' cfg.package "choria-plugins-server")
          "--root"
          cfg.root
          "--listen"
          "${cfg.listenAddress}:${toString cfg.port}"
        ];
        DynamicUser = true;
        # the name the namespace lab's plugins host uses too
        User = "choria-plugins";
        StateDirectory = "choria-plugins";
        StateDirectoryMode = "0755";
        UMask = "0022";
        # Only to bind a port below 1024.
        AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];
  };
}
