# OCI images, one per role of the topology, for nix/compose/docker-compose.yaml.
# `nix build .#images.<role>` makes a script that streams the image:
# `./result | docker load`.
#
# Every role but the server runs as the unprivileged user choria (uid 1000);
# the compose file's setup service hands each role its credentials owned by
# that user. Paths are the topology's, as on the VMs and in the namespace lab.
{
  lib,
  dockerTools,
  fakeNss,
  writeShellScriptBin,
  bashInteractive,
  coreutils,
  nats-server,
  natscli,
  choria,
  choria-provisioner,
  aaasvc,
  stream-replicator,
  choria-reference,
  choria-plugins,
  topology,
}:

let
  roles = topology.roles;
  ports = topology.ports;
  uid = "1000";

  users = fakeNss.override {
    extraPasswdLines = [ "choria:x:${uid}:${uid}:Choria:/home/choria:/bin/sh" ];
    extraGroupLines = [ "choria:x:${uid}:" ];
  };

  mkImage =
    {
      role,
      contents,
      config,
      # Directories the image's user must be able to write.
      writable ? [ ],
      user ? uid,
      tag,
      # Shell commands run in the image's root directory before ownership is set.
      extraCommands ? "",
    }:
    dockerTools.streamLayeredImage {
      name = "choria-lab-${role}";
      inherit tag;
      contents = [
        users
        dockerTools.caCertificates
      ]
      ++ contents;
      extraCommands = ''
        mkdir -p tmp home/choria ${lib.concatMapStringsSep " " (lib.removePrefix "/") writable}
        chmod 1777 tmp
        ${extraCommands}
      '';
      fakeRootCommands = ''
        chown ${user}:${user} home/choria ${lib.concatMapStringsSep " " (lib.removePrefix "/") writable}
      '';
      config = {
        User = user;
        Env = [
          "PATH=/bin"
          "USER=${if user == "0" then "root" else "choria"}"
        ];
      }
      // config;
    };

  # Makes the lab's credentials into /credentials (a volume), once; later
  # runs verify and keep them. Each role's directory is handed to uid 1000.
  setup = writeShellScriptBin "choria-lab-setup" ''
    set -eu
    ${choria-reference}/bin/choria-bootstrap --out /credentials --timings lab \
      --provision-helper /bin/choria-provision-helper "$@"
    for dir in broker aaa provisioner replicator client; do
      chown -R ${uid}:${uid} /credentials/$dir
    done
  '';
in
{
  setup = mkImage {
    role = "setup";
    tag = choria-reference.version;
    user = "0";
    contents = [
      setup
      coreutils
    ];
    config.Entrypoint = [ "/bin/choria-lab-setup" ];
  };

  broker = mkImage {
    role = "broker";
    tag = choria.version;
    contents = [ choria ];
    writable = [ roles.broker.state_dir ];
    config = {
      Entrypoint = [
        "/bin/choria"
        "broker"
        "run"
        "--config"
        "${roles.broker.config_dir}/broker.conf"
      ];
      ExposedPorts = lib.genAttrs [
        "${toString ports.broker_client}/tcp"
        "${toString ports.broker_cluster}/tcp"
        "${toString ports.broker_stats}/tcp"
      ] (_: { });
    };
  };

  provisioner = mkImage {
    role = "provisioner";
    tag = choria-provisioner.version;
    # The helper is run as /bin/choria-provision-helper (see setup).
    contents = [
      choria-provisioner
      choria-reference
    ];
    writable = [ roles.provisioner.state_dir ];
    config.Entrypoint = [
      "/bin/choria-provisioner"
      "--config"
      "${roles.provisioner.config_dir}/provisioner.yaml"
      "--choria-config"
      "${roles.provisioner.config_dir}/choria.cfg"
    ];
  };

  aaa = mkImage {
    role = "aaa";
    tag = aaasvc.version;
    contents = [ aaasvc ];
    writable = [ roles.aaa.state_dir ];
    config = {
      Entrypoint = [
        "/bin/aaasvc"
        "run"
        "--config"
        "${roles.aaa.config_dir}/aaa.conf"
      ];
      ExposedPorts."${toString ports.aaa_login}/tcp" = { };
    };
  };

  replicator = mkImage {
    role = "replicator";
    tag = stream-replicator.version;
    contents = [ stream-replicator ];
    writable = [ roles.replicator.state_dir ];
    config.Entrypoint = [
      "/bin/stream-replicator"
      "replicate"
      "--config"
      "${roles.replicator.config_dir}/sr.yaml"
    ];
  };

  nats = mkImage {
    role = "nats";
    tag = "nixos-26.05";
    contents = [ nats-server ];
    writable = [ roles.nats.state_dir ];
    config = {
      Entrypoint = [
        "/bin/nats-server"
        "--jetstream"
        "--store_dir"
        roles.nats.state_dir
        "--port"
        (toString ports.nats_client)
        "--http_port"
        (toString ports.nats_monitor)
      ];
      ExposedPorts."${toString ports.nats_client}/tcp" = { };
    };
  };

  # Serves choria-plugins' archives; a named volume mounted on the state
  # directory starts as a copy of them (docker copies an image's files into
  # an empty volume), and more can be added there at run time.
  plugins = mkImage {
    role = "plugins";
    tag = "nixos-26.05";
    contents = [ choria-reference ];
    writable = [ roles.plugins.state_dir ];
    extraCommands = ''
      cp -r --no-preserve=mode ${choria-plugins}/docroot/. ${lib.removePrefix "/" roles.plugins.state_dir}/
    '';
    config = {
      # The same server as in the namespace lab and the NixOS module.
      Entrypoint = [
        "/bin/choria-plugins-server"
        "--root"
        roles.plugins.state_dir
        "--listen"
        ":${toString ports.plugins_http}"
      ];
      ExposedPorts."${toString ports.plugins_http}/tcp" = { };
    };
  };

  # Root: a server's agents manage its host, and provisioning writes
  # /etc/choria. Started by absolute path: it re-executes its argv[0].
  server = mkImage {
    role = "server";
    tag = choria.version;
    user = "0";
    contents = [
      choria
      choria-reference
      bashInteractive
      coreutils
    ];
    writable = [
      roles.server.config_dir
      "${roles.server.state_dir}/plugins/mcollective/agent"
      "/var/spool/choria"
      "/var/log"
    ];
    config.Entrypoint = [
      "/bin/choria"
      "server"
      "run"
      "--config"
      "${roles.server.config_dir}/server.conf"
    ];
  };

  client = mkImage {
    role = "client";
    tag = choria.version;
    contents = [
      choria
      choria-reference
      natscli
      bashInteractive
      coreutils
    ];
    config = {
      Entrypoint = [ "/bin/bash" ];
      Cmd = [ "-l" ];
      WorkingDir = "/home/choria";
    };
  };
}
