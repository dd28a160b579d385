# OCI images, one per role of the topology, for nix/compose/docker-compose.yaml.
# `nix build .#images.<role>` makes a script that streams the image
# (`./result | docker load`); `nix build .#images.load` makes
# `choria-lab-load-images ENV-FILE`, which loads them all and writes the
# compose file's tags (`CHORIA_LAB_TAG_<ROLE>`) into ENV-FILE.
#
# Tags are dockerTools' default, the hash of the image's configuration, so
# a changed image has a new tag and compose recreates its containers.
#
# Every role but setup and the servers runs as the unprivileged user choria
# (uid 1000); setup hands each role its credentials owned by that user.
# Paths are the topology's, as on the VMs and in the namespace lab. Each
# image holds its role's programs, the tools the walkthrough runs on its
# host (`sh`, `cat`, `grep`, … on aaa, nats, the servers and the client)
# and choria-ready, its healthcheck; single programs of choria-reference
# are copied out of it, so an image does not carry all of our programs.
{
  lib,
  dockerTools,
  fakeNss,
  runCommand,
  writeShellScriptBin,
  bashInteractive,
  coreutils,
  gnugrep,
  gnused,
  gawk,
  gnutar,
  gzip,
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
  inherit (topology) roles ports;
  paths = topology.server_paths;
  # The timings choria-bootstrap renders for the lab (setup below), for
  # this fleet.
  timing = (import ./topology.nix { inherit lib; } topology).timing "lab";
  fqdn = name: "${name}.${topology.domain}";
  hostOf =
    role:
    lib.findFirst (
      h: h.role == role
    ) (throw "the topology has no host with the role ${role}") topology.hosts;

  uid = 1000;
  userName = "choria";
  home = "/home/${userName}";
  owner = "${toString uid}:${toString uid}";

  users = fakeNss.override {
    extraPasswdLines = [ "${userName}:x:${toString uid}:${toString uid}:Choria:${home}:/bin/sh" ];
    extraGroupLines = [ "${userName}:x:${toString uid}:" ];
  };

  # One program of a package, copied (our programs are static), so the
  # image holds it and not the package's other programs.
  program =
    pkg: name:
    runCommand "${name}-${pkg.version}" { } ''
      install -D -m 0755 ${lib.getExe' pkg name} $out/bin/${name}
    '';
  ready = program choria-reference "choria-ready";

  # At build time (the image trees below) and in setup, which runs
  # choria-bootstrap and signs with the packager.
  pack = lib.getExe' choria-reference "choria-plugin-pack";
  setupPrograms = [
    (program choria-reference "choria-bootstrap")
    (program choria-reference "choria-plugin-pack")
    coreutils
    gnugrep
  ];

  # What the walkthrough's commands call on the hosts it runs them on
  # (internal/nixcheck holds each step to its host's image).
  shell = [
    bashInteractive
    coreutils
  ];

  # The external agents machine's signed manifest: setup makes it into the
  # credentials volume, compose mounts it here on the servers, and the
  # server's start copies it into the machine's directory (the machine
  # rewrites its data file, so a read-only mount cannot be the file itself).
  machineDataMount = "/run/choria-lab/external-agents.machine_data.json";

  mkImage =
    {
      role,
      contents,
      config,
      # Directories made in the image, owned by its user.
      dirs ? [ ],
      # Trees whose files the image holds as files of its own, not as the
      # links into the store that contents become: files a person copies,
      # or that a program rewrites or runs from its directory.
      trees ? [ ],
      user ? uid,
    }:
    let
      relative = lib.concatMapStringsSep " " (lib.removePrefix "/");
    in
    dockerTools.streamLayeredImage {
      name = "choria-lab-${role}";
      contents = [
        users
        dockerTools.caCertificates
      ]
      ++ contents
      ++ trees;
      extraCommands =
        lib.concatMapStrings (tree: ''
          (cd ${tree} && find . -type f) | while IFS= read -r f; do
            cp --remove-destination --no-preserve=mode "${tree}/$f" "$f"
            if [ -x "${tree}/$f" ]; then chmod 0755 "$f"; fi
          done
        '') trees
        + ''
          mkdir -p tmp ${relative dirs}
          chmod 1777 tmp
        '';
      fakeRootCommands = lib.optionalString (user != 0 && dirs != [ ]) ''
        chown -R ${owner} ${relative dirs}
      '';
      config = {
        User = toString user;
        Env = [
          "PATH=/bin"
        ]
        ++ (
          if user == 0 then
            [
              "USER=root"
              "HOME=/root"
            ]
          else
            [ "USER=${userName}" ]
        )
        # the role's Go runtime settings, as its NixOS unit and the
        # namespace lab's process get them (setup is no role of the
        # topology)
        ++ lib.mapAttrsToList (name: value: "${name}=${value}") (roles.${role}.go_runtime or { });
      }
      // config;
    };

  topologyUsers = map (u: u.name) topology.users;

  # Makes the lab's credentials into /credentials (the credentials volume)
  # once, later runs verifying and keeping them; signs the external agents
  # manifest; hands each role's directory to uid 1000; and installs
  # choria-plugins' archives into /docroot (the plugins volume), owned by
  # uid 1000 so the client may replace them. An archive is replaced when
  # this image brings another, unless a person replaced it since:
  # .choria-plugins.sha256 records what was installed (the plugins server
  # serves no dot file). `--brokers N` runs the first N of the topology's
  # brokers (the cluster profile's three). `password USER` and
  # `provisioning-token` print those secrets, for a person to log in and
  # provision.
  setupScript = writeShellScriptBin "choria-lab-setup" ''
    set -euo pipefail
    export PATH=${lib.makeBinPath setupPrograms}
    creds=/credentials
    docroot=/docroot

    case "''${1:-random}" in
      random) secrets=() ;;
      demo) secrets=(--demo-secrets) ;;
      password)
        case "''${2:-}" in
          ${lib.concatStringsSep " | " topologyUsers}) exec cat "$creds/operator/user-$2.password" ;;
          *) echo "usage: password ${lib.concatStringsSep "|" topologyUsers}" >&2; exit 2 ;;
        esac
        ;;
      provisioning-token) exec cat "$creds/operator/provisioning-token" ;;
      *) echo "usage: choria-lab-setup [random|demo [--brokers N]|password USER|provisioning-token]" >&2; exit 2 ;;
    esac
    brokers=()
    if [ "''${2:-}" = --brokers ]; then
      brokers=(--brokers "''${3:?--brokers needs a number}")
    fi

    choria-bootstrap --out "$creds" --timings lab \
      --provision-helper /bin/choria-provision-helper "''${secrets[@]}" "''${brokers[@]}"
    choria-plugin-pack sign ${choria-plugins}/server-plugins.json "$creds/client/plugin-signer.seed" \
      --output "$creds/server/server-plugins.spec.json" \
      --machine-data "$creds/server/external-agents.machine_data.json"
    chmod 0644 "$creds/server/external-agents.machine_data.json"
    # every broker's own directory, of those that run
    for dir in ${
      lib.concatMapStringsSep " " (b: b.name) topology.brokers.hosts
    } aaa provisioner replicator client; do
      if [ -d "$creds/$dir" ]; then
        chown -R ${owner} "$creds/$dir"
      fi
    done

    record="$docroot/.choria-plugins.sha256"
    touch "$record"
    for src in ${choria-plugins}/docroot/*; do
      name=$(basename "$src")
      if [ -e "$docroot/$name" ] &&
        ! grep -qxF "$(sha256sum < "$docroot/$name" | cut -d' ' -f1)  $name" "$record"; then
        echo "keeping $docroot/$name: replaced since it was installed"
        continue
      fi
      install -m 0644 -o ${toString uid} -g ${toString uid} "$src" "$docroot/$name"
    done
    (cd ${choria-plugins}/docroot && sha256sum -- *) > "$record.tmp"
    mv "$record.tmp" "$record"
    chown ${owner} "$docroot" "$record"
  '';

  # A server's configuration directory before provisioning, as the
  # namespace lab prepares it: the facts machine (gathering with
  # choria-facts), the external agents machine (its data comes from
  # setup, see machineDataMount) and the requests agent's policy, which
  # lets it reach the plugins host only.
  serverEtc = runCommand "choria-lab-server-etc" { } ''
    etc=$out${roles.server.config_dir}
    ${pack} facts-machine --dir $out${paths.machine_dir}/facts \
      --gather ${lib.getExe' choria-reference "choria-facts"} --interval ${timing.facts_interval}
    ${pack} external-agents-machine --dir $out${paths.machine_dir}/external_agents \
      --plugins-directory ${paths.plugins_dir}/mcollective/agent \
      --interval ${timing.plugins_interval} --manage-interval ${timing.plugins_manage_interval}
    mkdir -p $etc/plugin.d
    printf '%s\n' ${lib.escapeShellArg "allowed_hosts = ${fqdn (hostOf "plugins").name}"} > $etc/plugin.d/requests
  '';

  # Started by absolute path: a server re-executes its argv[0].
  serverStart = writeShellScriptBin "choria-lab-server" ''
    set -eu
    ${lib.getExe' coreutils "install"} -D -m 0644 ${machineDataMount} \
      ${paths.machine_dir}/external_agents/machine_data.json
    exec /bin/choria server run --config ${roles.server.config_dir}/server.conf
  '';

  # The client's home as the reference's tour expects it: the check_choria
  # machine's source in ~/plugins (~/credentials and ~/htdocs are mounts).
  clientHome = runCommand "choria-lab-client-home" { } ''
    ${pack} check-choria-machine --dir $out${home}/plugins/check_choria \
      --interval ${timing.scout_check_interval}
  '';

  # nats-server's settings, as the namespace lab and nixpkgs' services.nats
  # give them.
  natsHost = hostOf "nats";
  natsEtc = runCommand "choria-lab-nats-etc" { } ''
    mkdir -p $out${roles.nats.config_dir}
    printf '%s' ${
      lib.escapeShellArg (
        builtins.toJSON {
          server_name = natsHost.name;
          host = "0.0.0.0";
          port = ports.nats_client;
          http_port = ports.nats_monitor;
          jetstream.store_dir = roles.nats.state_dir;
        }
      )
    } > $out${roles.nats.config_dir}/nats.conf
  '';

  images = {
    setup = mkImage {
      role = "setup";
      user = 0;
      contents = [ setupScript ] ++ setupPrograms;
      config.Entrypoint = [ "/bin/choria-lab-setup" ];
    };

    broker = mkImage {
      role = "broker";
      contents = [
        choria
        ready
      ];
      dirs = [ roles.broker.state_dir ];
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

    # The helper is run as /bin/choria-provision-helper (setup tells
    # choria-bootstrap so).
    provisioner = mkImage {
      role = "provisioner";
      contents = [
        choria-provisioner
        (program choria-reference "choria-provision-helper")
        ready
      ];
      dirs = [ roles.provisioner.state_dir ];
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
      contents = [
        aaasvc
        ready
      ]
      ++ shell;
      dirs = [ roles.aaa.state_dir ];
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
      contents = [
        stream-replicator
        ready
      ];
      dirs = [ roles.replicator.state_dir ];
      config.Entrypoint = [
        "/bin/stream-replicator"
        "replicate"
        "--config"
        "${roles.replicator.config_dir}/sr.yaml"
      ];
    };

    # `nats` and the tools of the tour's replication steps beside the server.
    nats = mkImage {
      role = "nats";
      contents = [
        nats-server
        natscli
        ready
        gnugrep
        gnused
      ]
      ++ shell;
      trees = [ natsEtc ];
      dirs = [
        roles.nats.state_dir
        home
      ];
      config = {
        Entrypoint = [
          "/bin/nats-server"
          "-c"
          "${roles.nats.config_dir}/nats.conf"
        ];
        ExposedPorts."${toString ports.nats_client}/tcp" = { };
      };
    };

    # Serves the plugins volume, which setup fills (choria-plugins) and the
    # client adds to; the same server as in the namespace lab and the
    # NixOS module.
    plugins = mkImage {
      role = "plugins";
      contents = [
        (program choria-reference "choria-plugins-server")
        ready
      ];
      dirs = [ roles.plugins.state_dir ];
      config = {
        Entrypoint = [
          "/bin/choria-plugins-server"
          "--root"
          roles.plugins.state_dir
          "--listen"
          "0.0.0.0:${toString ports.plugins_http}"
        ];
        ExposedPorts."${toString ports.plugins_http}/tcp" = { };
      };
    };

    # Root: a server's agents manage its host, and provisioning writes
    # /etc/choria.
    server = mkImage {
      role = "server";
      user = 0;
      contents = [
        choria
        serverStart
        gnugrep
      ]
      ++ shell;
      trees = [ serverEtc ];
      dirs = [
        "/root"
        "${paths.plugins_dir}/mcollective/agent"
        "/var/spool/choria"
        (dirOf paths.status_file)
      ];
      config.Entrypoint = [ "/bin/choria-lab-server" ];
    };

    client = mkImage {
      role = "client";
      contents = [
        choria
        gnugrep
        gnused
        gawk
        gnutar
        gzip
      ]
      ++ shell;
      trees = [ clientHome ];
      dirs = [ home ];
      config = {
        Entrypoint = [ "/bin/bash" ];
        Cmd = [ "-l" ];
        WorkingDir = home;
      };
    };
  };

  tagVariable = role: "CHORIA_LAB_TAG_${lib.toUpper role}";
in
images
// {
  # Loads every image into Docker (the `docker` on PATH) and writes the tag
  # of each into ENV-FILE, which nix/compose/docker-compose.yaml reads.
  load = writeShellScriptBin "choria-lab-load-images" ''
    set -euo pipefail
    env=''${1:?usage: choria-lab-load-images ENV-FILE (nix/compose/.env beside the compose file)}
    ${lib.concatMapStrings (image: "${image} | docker load\n") (lib.attrValues images)}
    printf '%s\n' ${
      lib.escapeShellArgs (
        lib.mapAttrsToList (role: image: "${tagVariable role}=${image.imageTag}") images
      )
    } > "$env.tmp"
    mv "$env.tmp" "$env"
    echo "images loaded; their tags are in $env"
  '';
}
