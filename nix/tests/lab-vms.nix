# Lab VMs as a NixOS test: one VM per host of a topology (or of the hosts
# named) on the topology's four networks, each a VLAN of the test driver,
# each VM on its own networks only, with the topology's addresses and
# /etc/hosts. Every VM runs the flake's `lab` profile, as a real deployment
# would. The test script is common.py (after the facts below: it boots the
# VMs, lets the broker bootstrap the lab's credentials, hands every other VM
# its part and waits until the servers, started with nothing but
# provisioning.jwt, are provisioned by the provisioner), then the test's own.
#
# walkthrough.nix and cluster.nix are its tests.
{
  lib,
  testers,
  expect,
  writeShellScriptBin,
  writeText,
  nixosModules,
}:

{
  name,
  # The topology as the VMs see it: its broker and server counts applied.
  topo,
  # The hosts that get a VM; every host of the topology when null.
  hostNames ? null,
  # Python run after common.py.
  script,
  extraFacts ? { },
  extraPythonPackages ? (_: [ ]),
}:

let
  t = import ../topology.nix { inherit lib; } topo;

  # The hosts that get a VM, in the topology's order.
  vmHosts = if hostNames == null then t.hosts else lib.filter (h: lib.elem h.name hostNames) t.hosts;

  # The machine that runs choria-bootstrap; the others get copies.
  bootstrapHost = "broker";
  credentialsDir = "/var/lib/choria-lab/credentials";

  # VLAN n is the topology's n-th network; the test driver attaches
  # virtualisation.vlans [ a b … ] as eth1, eth2, … in that order.
  vlanOf = lib.listToAttrs (lib.imap1 (i: n: lib.nameValuePair n i) t.networkNames);

  # `choria login` asks on a terminal: expect(1) answers it, and the cursor
  # position queries of its prompt library (as internal/lab/login.go does),
  # typing each answer only once the prompt waits for it. The password is
  # read from a file, never from the command line. Checked against the real
  # choria login and aaasvc of the namespace lab.
  loginScript = writeText "choria-login.exp" ''
    set user [lindex $argv 0]
    set fh [open [lindex $argv 1] r]
    set password [string trimright [read $fh] "\n"]
    close $fh
    set env(TERM) dumb
    set query "\033\[6n"
    set reply "\033\[1;1R"

    # Answers the terminal queries a prompt sends, until it waits for input.
    proc settle {} {
      global query reply
      expect -timeout 1 -ex $query { send -- $reply; exp_continue } timeout {}
    }

    # 0: waiting for the user name prompt, 1: for the password prompt, 2: done.
    set step 0
    proc answer {seen} {
      global step user password
      if {$step == 0 && [string match "*Username*" $seen]} {
        settle; send -- "$user\r"; set step 1
      } elseif {$step == 1 && [string match "*Password*" $seen]} {
        settle; send -- "$password\r"; set step 2
      }
    }

    set timeout 60
    spawn -noecho choria login
    expect {
      -ex $query { send -- $reply; answer $expect_out(buffer); exp_continue }
      -ex "Username" { answer $expect_out(buffer); exp_continue }
      -ex "Password" { answer $expect_out(buffer); exp_continue }
      timeout { puts stderr "choria login did not finish in $timeout seconds"; exit 124 }
      eof
    }
    lassign [wait] pid spawnid osError status
    exit $status
  '';

  # On the client: `choria-lab-login [USER] [PASSWORD-FILE]`, like
  # `choria-lab login` in the namespace lab.
  login = writeShellScriptBin "choria-lab-login" ''
    user=''${1:-admin}
    exec ${lib.getExe' expect "expect"} -f ${loginScript} "$user" \
      "''${2:-${credentialsDir}/operator/user-$user.password}"
  '';

  # The client's ~/htdocs is the plugins host's docroot, one directory the
  # two VMs share (the namespace lab binds one directory to both), under the
  # test driver's shared directory; the test script makes it before the VMs
  # start.
  htdocsShare = "choria-htdocs";

  # Guest memory per role, MiB: what the role's processes peaked at in the
  # namespace lab during the whole walkthrough (RSS of the service and its
  # children: broker 75, provisioner 53, aaasvc 41, stream-replicator 20,
  # nats-server 17, choria-plugins-server 11, a server 58), plus ~400 for
  # NixOS itself, rounded up; the client runs the choria CLI and nats. A
  # test's VMs take at most 6 GiB in all, for 16 GiB CI runners.
  memoryMiB = {
    broker = 640;
    provisioner = 512;
    aaa = 512;
    replicator = 512;
    nats = 448;
    plugins = 384;
    client = 768;
    server = 512;
  };

  node =
    host:
    let
      networks = t.networksOf host;
      sharesHtdocs = host.role == "client" || host.role == "plugins";
    in
    { config, lib, ... }:
    {
      imports = [ nixosModules.lab ];

      services.choria-lab = {
        enable = true;
        host = host.name;
        bootstrap = host.name == bootstrapHost;
        topology = topo;
        inherit credentialsDir;
      };

      virtualisation.vlans = map (n: vlanOf.${n}) networks;
      virtualisation.memorySize = memoryMiB.${host.role};

      # The topology's addresses instead of the driver's 192.168.<vlan>.<n>.
      networking.interfaces = lib.listToAttrs (
        lib.imap1 (
          i: n:
          lib.nameValuePair "eth${toString i}" {
            ipv4.addresses = lib.mkForce [
              {
                address = host.addresses.${n};
                prefixLength = t.prefixLength.${n};
              }
            ];
            ipv6.addresses = lib.mkForce [ ];
          }
        ) networks
      );
      networking.primaryIPAddress = lib.mkForce host.addresses.${lib.head networks};
      networking.primaryIPv6Address = lib.mkForce "";
      # The driver lists every VM under its first address; /etc/hosts comes
      # from the topology instead (the lab profile's networking.hosts: each
      # host under its address on a network shared with this one).
      networking.extraHosts = lib.mkForce "";

      environment.systemPackages = lib.optional (host.role == "client") login;

      virtualisation.sharedDirectories = lib.mkIf sharesHtdocs {
        ${htdocsShare} = {
          # qemu-vm.nix puts the source into its start script's command
          # line as shell: made there, so the VMs also start by hand
          # (`nix run .#lab-vms`, then start_all()).
          source = ''"$(mkdir -p "$SHARED_DIR"/${htdocsShare} && printf %s "$SHARED_DIR"/${htdocsShare})"'';
          target = if host.role == "client" then "/root/htdocs" else config.services.choria-lab.docroot;
          # as the driver's own shares: no xattrs needed on the build machine's temp directory
          securityModel = "none";
        };
      };
    };

  # Facts the test script reads, as JSON: the hosts are those with a VM.
  facts = {
    inherit bootstrapHost credentialsDir;
    hosts = map (h: {
      inherit (h) name role addresses;
      fqdn = t.fqdn h.name;
    }) vmHosts;
    roles = topo.roles;
    server_paths = topo.server_paths;
    streams = topo.streams;
    users = map (u: u.name) topo.users;
    inherit htdocsShare;
    domain = topo.domain;
    ports = topo.ports;
    inherit (t) streamReplicas;
  }
  // extraFacts;
in
testers.runNixOSTest {
  inherit name extraPythonPackages;

  nodes = lib.listToAttrs (map (h: lib.nameValuePair h.name (node h)) vmHosts);

  # The provisioner's interval is a minute; the scripts' own deadlines are
  # shorter.
  globalTimeout = 3600;

  testScript = ''
    FACTS = ${builtins.toJSON (builtins.toJSON facts)}
    MACHINES = {${lib.concatMapStringsSep ", " (h: ''"${h.name}": ${h.name}'') vmHosts}}

  ''
  + builtins.readFile ./common.py
  + script;

  passthru = { inherit facts; };
}
