# The lab profile: makes this machine one host of the topology
# (topology/topology.json, the file the Go programs embed), composing the
# role modules, and bootstraps the lab's credentials at first boot with
# choria-bootstrap. Every role module is configured with the files
# choria-bootstrap renders, so the VMs run the configuration the namespace
# lab runs.
#
# Import the role modules too (the flake's nixosModules.lab does).
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.choria-lab;
  topo = cfg.topology;
  inherit (lib) types;

  # --- the topology, as the Go reader computes it ----------------------
  topology = import ../topology.nix { inherit lib; } topo;
  inherit (topology) fqdn hosts hostsByName;

  self =
    hostsByName.${cfg.host}
      or (throw "services.choria-lab.host: ${cfg.host} is not a host of the topology (${
        lib.concatMapStringsSep ", " (h: h.name) hosts
      })");
  role = self.role;
  roleDirs = topo.roles.${role};

  # The requests agent's policy, its configuration file plugin.d/requests
  # beside server.conf (agents/requests, PolicyConfig): the plugins host, as
  # the tour needs, and no file to read or write. The namespace lab writes
  # the same.
  pluginsHost = lib.findFirst (
    h: h.role == "plugins"
  ) (throw "the topology has no plugins host") hosts;
  requestsPolicy = pkgs.writeText "choria-requests-policy" ''
    allowed_hosts = ${fqdn pluginsHost.name}
  '';

  # Each other host under the address of the first network, in the
  # topology's order, it shares with this one, as the namespace lab's
  # HostsFile (two brokers of a cluster share three).
  hostEntries = lib.foldl' (
    acc: h:
    let
      shared = lib.filter (n: self.addresses ? ${n}) (topology.networksOf h);
    in
    if h.name == self.name || shared == [ ] then
      acc
    else
      acc
      // {
        ${h.addresses.${lib.head shared}} = (acc.${h.addresses.${lib.head shared}} or [ ]) ++ [
          (fqdn h.name)
          h.name
        ];
      }
  ) { } hosts;

  # --- credentials ---------------------------------------------------------
  # choria-bootstrap's output directory of this host (a role's, or a
  # broker's own, named after it: bootstrap.BrokerDir), and the user each
  # role's service runs as (who must own its copy).
  credentialsSource = if role == "broker" then self.name else role;
  credentialOwners = {
    broker = config.services.choria-broker.user;
    provisioner = config.services.choria-provisioner.user;
    aaa = config.services.choria-aaasvc.user;
    replicator = config.services.choria-stream-replicator.user;
    client = "root";
  };

  topologyFile = pkgs.writeText "topology.json" (builtins.toJSON topo);

  bootstrap = lib.escapeShellArgs [
    "${cfg.package}/bin/choria-bootstrap"
    "--out"
    cfg.credentialsDir
    "--topology"
    topologyFile
    "--timings"
    cfg.timings
    "--provision-helper"
    "${cfg.package}/bin/choria-provision-helper"
  ];

  # Copies this role's credentials into its configuration directory, owned
  # by its service user. Files /etc manages (client.conf) are left alone.
  installCredentials =
    let
      owner = credentialOwners.${role};
      source = "${cfg.credentialsDir}/${credentialsSource}";
    in
    ''
      if [ ! -d ${source} ]; then
        echo "${source} is missing: bootstrap this lab's credentials on one host and copy ${cfg.credentialsDir} here" >&2
        exit 1
      fi
      install -d -m 0700 -o ${owner} -g root ${roleDirs.config_dir}
      for f in ${source}/*; do
        dst=${roleDirs.config_dir}/$(basename "$f")
        if [ -L "$dst" ]; then
          continue
        fi
        cp -p "$f" "$dst.tmp"
        chown ${owner} "$dst.tmp"
        mv "$dst.tmp" "$dst"
      done
    '';

  # The unit of the role's service. It gets the role's Go runtime settings
  # (the topology's roles.<role>.go_runtime), as the namespace lab's
  # process and the role's image do; the client runs no service, and a
  # null attribute name defines nothing.
  serviceUnit =
    {
      broker = "choria-broker";
      provisioner = "choria-provisioner";
      aaa = "aaasvc";
      replicator = "stream-replicator";
      server = "choria-server";
      nats = "nats";
      plugins = "choria-plugins-webserver";
      client = null;
    }
    .${role};

  needsCredentials = credentialOwners ? ${role} || role == "server";
  # The role's service starts once the host's credentials are in place.
  credentialUnits = lib.optional (needsCredentials && serviceUnit != null) "${serviceUnit}.service";
  ports = topo.ports;
  timing = topology.timing cfg.timings;

  pluginPack = "${cfg.package}/bin/choria-plugin-pack";

  # The external agents machine's signed manifest, made on the bootstrapping
  # machine and handed to servers with the rest of server/.
  externalAgentsData = "${cfg.credentialsDir}/server/external-agents.machine_data.json";

  # Signs the requests agent's manifest (built, unsigned, into cfg.plugins)
  # with the plugin signer seed, which exists only at run time.
  signPlugins = lib.escapeShellArgs [
    pluginPack
    "sign"
    "${cfg.plugins}/server-plugins.json"
    "${cfg.credentialsDir}/client/plugin-signer.seed"
    "--output"
    "${cfg.credentialsDir}/server/server-plugins.spec.json"
    "--machine-data"
    externalAgentsData
  ];

  # A server's autonomous agents, as the namespace lab gives them: facts
  # (gathered with choria-facts) and the external agents manager, which
  # deploys the requests agent from the plugins host.
  agentDir = "${topo.server_paths.plugins_dir}/mcollective/agent";

  installMachines = ''
    ${lib.escapeShellArgs [
      pluginPack
      "facts-machine"
      "--dir"
      "${topo.server_paths.machine_dir}/facts"
      "--gather"
      "${cfg.package}/bin/choria-facts"
      "--interval"
      timing.facts_interval
    ]}
    if [ ! -e ${externalAgentsData} ]; then
      echo "${externalAgentsData} is missing: it is made with the credentials, on the bootstrapping host" >&2
      exit 1
    fi
    # at the lab's plugin intervals; the signed manifest goes in first, the
    # server may be watching the directory
    ${lib.escapeShellArgs [
      pluginPack
      "external-agents-machine"
      "--dir"
      "${topo.server_paths.machine_dir}/external_agents"
      "--plugins-directory"
      agentDir
      "--machine-data"
      externalAgentsData
      "--interval"
      timing.plugins_interval
      "--manage-interval"
      timing.plugins_manage_interval
    ]}
  '';

  # The client's home as the reference's walkthrough expects it: the plugin
  # signer in ~/credentials and the check_choria source in ~/plugins (the
  # namespace lab binds the same). ~/htdocs, served by the plugins host, is
  # the deployment's business (the VM test shares a directory).
  installClientHome = ''
    ln -sfn ${cfg.credentialsDir}/client /root/credentials
    ${lib.escapeShellArgs [
      pluginPack
      "check-choria-machine"
      "--dir"
      "/root/plugins/check_choria"
      "--interval"
      timing.scout_check_interval
    ]}
  '';

  # A cluster's registration stream has a replica per broker, and the
  # Stream Replicator makes its target as a copy of its source: the one
  # NATS server refuses that ("replicas > 1 not supported in non-clustered
  # mode"). On a cluster the NATS host makes the stream first, with one
  # replica, as the namespace lab does (lab.NATSTargetStreamArgs), and the
  # replicator uses it as it is.
  registration = topo.streams.registration;
  natsServer = "nats://127.0.0.1:${toString ports.nats_client}";
  makeTargetStream = ''
    ${
      lib.escapeShellArgs [
        nats
        "--server"
        natsServer
        "stream"
        "info"
        registration.name
      ]
    } >/dev/null 2>&1 || ${
      lib.escapeShellArgs [
        nats
        "--server"
        natsServer
        "stream"
        "add"
        registration.name
        "--subjects"
        (lib.concatStringsSep "," registration.subjects)
        "--storage"
        "file"
        "--replicas"
        "1"
        "--defaults"
      ]
    }
  '';
  nats = lib.getExe' pkgs.natscli "nats";

  # What the plugins host serves: choria-plugins' archives, copied into a
  # writable directory so more can be added at run time.
  installDocroot = ''
    install -d -m 0755 ${cfg.docroot}
    install -m 0644 ${cfg.plugins}/docroot/* ${cfg.docroot}/
  '';
in
{
  options.services.choria-lab = {
    enable = lib.mkEnableOption "this machine as one host of the Choria lab";

    package = lib.mkPackageOption pkgs "choria-reference" { };

    topology = lib.mkOption {
      type = types.attrsOf types.anything;
      default = lib.importJSON ../../topology/topology.json;
      defaultText = lib.literalExpression "lib.importJSON ./topology/topology.json";
      description = "The lab's topology; choria-bootstrap is given the same.";
    };

    host = lib.mkOption {
      type = types.str;
      example = "broker";
      description = ''
        This machine's host in the topology: a fixed host (`broker`,
        `provisioner`, `aaa`, `replicator`, `nats`, `plugins`, `client`) or a
        server (`server1` …). It sets the host name and the role.
      '';
    };

    bootstrap = lib.mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether this machine makes the lab's credentials (issuer, tokens,
        TLS, every role's configuration) with `choria-bootstrap` at boot,
        into {option}`credentialsDir`. One machine of a lab does; the
        others receive a copy of that directory. Later boots verify and keep
        what exists.
      '';
    };

    credentialsDir = lib.mkOption {
      type = types.str;
      default = "/var/lib/choria-lab/credentials";
      description = "choria-bootstrap's output directory: one sub-directory per role.";
    };

    plugins = lib.mkPackageOption pkgs "choria-plugins" {
      extraDescription = ''
        The plugin archives and their unsigned manifests (the flake's
        `choria-plugins`): the plugins host serves its `docroot`, and the
        bootstrapping machine signs its `server-plugins.json` for the
        servers' external agents machine.
      '';
    };

    docroot = lib.mkOption {
      type = types.str;
      default = "/srv/choria-plugins";
      description = ''
        On the plugins host: the directory served, filled with
        {option}`plugins`' archives at start; plugins added there at run time
        are served too.
      '';
    };

    timings = lib.mkOption {
      type = types.enum [
        "lab"
        "reference"
      ];
      default = "lab";
      description = "The topology's timing profile rendered into the configurations.";
    };
  };

  config = lib.mkIf cfg.enable {
    networking.hostName = self.name;
    networking.domain = topo.domain;
    networking.hosts = hostEntries;

    systemd.services.choria-lab-credentials = lib.mkIf (needsCredentials || cfg.bootstrap) {
      description = "Choria lab credentials";
      wantedBy = [ "multi-user.target" ];
      requiredBy = credentialUnits;
      before = credentialUnits;
      path = [ pkgs.coreutils ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        StateDirectory = "choria-lab";
        StateDirectoryMode = "0700";
      };
      script = lib.concatStringsSep "\n" (
        lib.optionals cfg.bootstrap [
          bootstrap
          signPlugins
        ]
        ++ lib.optional (credentialOwners ? ${role}) installCredentials
        ++ lib.optional (role == "client") installClientHome
        ++ lib.optional (role == "server") installMachines
      );
    };

    # --- the role ------------------------------------------------------------
    systemd.services.${serviceUnit}.environment = topo.roles.${role}.go_runtime or { };

    services.choria-broker = lib.mkIf (role == "broker") {
      enable = true;
      configFile = "${roleDirs.config_dir}/broker.conf";
    };

    services.choria-provisioner = lib.mkIf (role == "provisioner") {
      enable = true;
      configFile = "${roleDirs.config_dir}/provisioner.yaml";
      choriaConfigFile = "${roleDirs.config_dir}/choria.cfg";
    };

    services.choria-aaasvc = lib.mkIf (role == "aaa") {
      enable = true;
      configFile = "${roleDirs.config_dir}/aaa.conf";
    };

    services.choria-stream-replicator = lib.mkIf (role == "replicator") {
      enable = true;
      configFile = "${roleDirs.config_dir}/sr.yaml";
    };

    # `nats` for looking at the replicated streams, as in the reference.
    environment.systemPackages = [ cfg.package ] ++ lib.optional (role == "nats") pkgs.natscli;

    services.nats = lib.mkIf (role == "nats") {
      enable = true;
      serverName = self.name;
      jetstream = true;
      port = ports.nats_client;
      settings.http_port = ports.nats_monitor;
      # Every address, for the replicator on another host: some versions of
      # the nixpkgs module listen on 127.0.0.1 unless told otherwise.
      settings.host = lib.mkForce "0.0.0.0";
    };

    services.choria-plugins-webserver = lib.mkIf (role == "plugins") {
      enable = true;
      root = cfg.docroot;
      port = ports.plugins_http;
    };

    systemd.services.choria-lab-nats-stream = lib.mkIf (role == "nats" && topology.clustered) {
      description = "Choria lab: the Stream Replicator's target stream";
      wantedBy = [ "multi-user.target" ];
      requires = [ "nats.service" ];
      after = [ "nats.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = config.services.nats.user;
        # until nats-server serves, a moment after it started
        Restart = "on-failure";
        RestartSec = 2;
      };
      script = makeTargetStream;
    };

    systemd.services.choria-lab-docroot = lib.mkIf (role == "plugins") {
      description = "Choria lab plugin archives";
      wantedBy = [ "multi-user.target" ];
      requiredBy = [ "choria-plugins-webserver.service" ];
      before = [ "choria-plugins-webserver.service" ];
      path = [ pkgs.coreutils ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      script = installDocroot;
    };

    programs.choria = lib.mkIf (role == "client") {
      enable = true;
      configFile = "${cfg.credentialsDir}/client/client.conf";
    };

    services.choria-server = lib.mkIf (role == "server") {
      enable = true;
      provisioning.enable = true;
      provisioning.tokenFile = "${cfg.credentialsDir}/server/provisioning.jwt";
      # choria-facts (the facts machine) and the requests agent.
      extraPackages = [ cfg.package ];
    };
    environment.etc."choria/plugin.d/requests" = lib.mkIf (role == "server") {
      source = requestsPolicy;
    };

    networking.firewall.allowedTCPPorts =
      {
        broker = [
          ports.broker_client
          ports.broker_cluster
          ports.broker_stats
        ];
        provisioner = [ ports.provisioner_monitor ];
        aaa = [
          ports.aaa_login
          ports.aaa_monitor
        ];
        replicator = [ ports.replicator_monitor ];
        nats = [
          ports.nats_client
          ports.nats_monitor
        ];
        plugins = [ ports.plugins_http ];
        client = [ ];
        server = [ ];
      }
      .${role};
  };
}
