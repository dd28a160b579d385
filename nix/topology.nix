# The topology's derived facts, computed as the Go reader (topology/) does:
# every host with its servers expanded, fully qualified names, and the
# networks' prefix lengths. Not a module: `import ./topology.nix { inherit lib; } topo`.
{ lib }:

topo:

let
  # Dotted IPv4 address plus n, carrying across octets.
  addToIPv4 =
    address: n:
    let
      octets = map lib.toInt (lib.splitString "." address);
      value = lib.foldl' (acc: o: acc * 256 + o) 0 octets + n;
      octet = divisor: toString (lib.mod (value / divisor) 256);
    in
    lib.concatMapStringsSep "." octet [
      16777216
      65536
      256
      1
    ];

  servers = lib.genList (i: {
    name = "${topo.servers.name_prefix}${toString (i + 1)}";
    role = "server";
    addresses.${topo.servers.network} = addToIPv4 topo.servers.first_address i;
  }) topo.servers.count;
in
rec {
  inherit addToIPv4 servers;

  fqdn = name: "${name}.${topo.domain}";

  # The fixed hosts, then server1 … serverN.
  hosts = topo.hosts ++ servers;
  hostsByName = lib.listToAttrs (map (h: lib.nameValuePair h.name h) hosts);

  # Network names in the topology's order.
  networkNames = map (n: n.name) topo.networks;

  # "198.18.0.0/22" -> 22
  prefixLength = lib.listToAttrs (
    map (
      n: lib.nameValuePair n.name (lib.toInt (lib.last (lib.splitString "/" n.subnet)))
    ) topo.networks
  );

  # A host's networks, in the topology's order.
  networksOf = host: lib.filter (n: host.addresses ? ${n}) networkNames;
}
