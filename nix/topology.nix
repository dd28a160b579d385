# The topology's derived facts, computed as the Go reader (topology/) does:
# every host with its running brokers and its servers expanded, fully
# qualified names, the networks' prefix lengths, the brokers' URLs, routes
# and stream replicas. Not a module: `import ./topology.nix { inherit lib; } topo`;
# its `withBrokers n` is the topology running the first n brokers (more
# than one is a cluster).
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

  # The running brokers: the first brokers.count of brokers.hosts, each a
  # host of the role broker.
  brokers = map (b: b // { role = "broker"; }) (lib.take topo.brokers.count topo.brokers.hosts);

  servers = lib.genList (i: {
    name = "${topo.servers.name_prefix}${toString (i + 1)}";
    role = "server";
    addresses.${topo.servers.network} = addToIPv4 topo.servers.first_address i;
  }) topo.servers.count;

  # A Go duration as the topology writes them ("200ms", "1m", "1m30s"), in
  # milliseconds.
  durationMs =
    text:
    let
      parts = builtins.split "([0-9]+)(ms|h|m|s)" text;
      units = {
        ms = 1;
        s = 1000;
        m = 60000;
        h = 3600000;
      };
      matched = lib.filter builtins.isList parts;
    in
    if matched == [ ] || lib.any (p: builtins.isString p && p != "") parts then
      throw "topology: ${text} is not a duration such as 90s or 1m30s"
    else
      lib.foldl' (acc: m: acc + lib.toInt (builtins.elemAt m 0) * units.${builtins.elemAt m 1}) 0 matched;

  formatMs = ms: if lib.mod ms 1000 == 0 then "${toString (ms / 1000)}s" else "${toString ms}ms";
in
rec {
  inherit
    addToIPv4
    brokers
    servers
    durationMs
    ;

  # A timing profile for this fleet, as the Go reader's Topology.Timing
  # gives it: each interval at least per_server's times the server count,
  # rounded up to a whole second.
  timing =
    profile:
    let
      tm = topo.timings.${profile};
      per = tm.per_server or { };
      grow =
        name: base:
        let
          grown = topo.servers.count * durationMs (per.${name} or "0s");
        in
        if grown > durationMs base then formatMs ((grown + 999) / 1000 * 1000) else base;
    in
    lib.mapAttrs grow (removeAttrs tm [ "per_server" ]);

  fqdn = name: "${name}.${topo.domain}";

  # The running brokers, the other fixed hosts, then server1 … serverN.
  hosts = brokers ++ topo.hosts ++ servers;
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

  # The topology (as read, not derived) running the first n brokers, as the
  # Go reader's WithBrokers: the cluster profile is all of brokers.hosts.
  withBrokers =
    n:
    if n < 1 || n > lib.length topo.brokers.hosts then
      throw "topology: ${toString n} brokers: brokers.hosts lists ${toString (lib.length topo.brokers.hosts)}"
    else
      topo
      // {
        brokers = topo.brokers // {
          count = n;
        };
      };

  # More than one broker: routes between them, streams replicated.
  clustered = topo.brokers.count > 1;

  # One replica of every stream and bucket per broker.
  streamReplicas = topo.brokers.count;

  # The brokers' client URLs, which every program that connects lists.
  brokerURLs = map (b: "nats://${fqdn b.name}:${toString topo.ports.broker_client}") brokers;

  # The cluster's routes, the same on every broker (itself included, which
  # NATS ignores); none for a single broker.
  brokerPeers = lib.optionals clustered (
    map (b: "nats://${fqdn b.name}:${toString topo.ports.broker_cluster}") brokers
  );
}
