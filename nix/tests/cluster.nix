# The broker cluster as a NixOS VM test (lab-vms.nix): the topology's
# cluster profile (every broker of brokers.hosts, so three) with two
# servers, the client, the provisioner and the AAA service, one VM each.
# After common.py has brought the lab up, cluster.py stops one broker and
# checks that the fleet survives it: every server answers again, nothing
# stored is lost, users log in and send signed requests, and the broker,
# started again, catches up.
#
# `checks.<system>.cluster` runs it.
{
  lib,
  callPackage,
  nixosModules,
  topology,
  serverCount ? 2,
}:

let
  t = import ../topology.nix { inherit lib; } topology;
  # the cluster profile, with serverCount servers
  topo = t.withBrokers (lib.length topology.brokers.hosts) // {
    servers = topology.servers // {
      count = serverCount;
    };
  };
  ct = import ../topology.nix { inherit lib; } topo;
  roleHost =
    role: (lib.findFirst (h: h.role == role) (throw "the topology has no ${role}") ct.hosts).name;
in
callPackage ./lab-vms.nix { inherit nixosModules; } {
  name = "choria-cluster";
  inherit topo;
  hostNames =
    map (h: h.name) ct.brokers
    ++ map roleHost [
      "provisioner"
      "aaa"
      "client"
    ]
    ++ map (h: h.name) ct.servers;
  script = builtins.readFile ./cluster.py;
}
