# The plugin archives the plugins web host serves, and their manifests,
# made with our packager (choria-plugin-pack, the program the namespace lab
# runs) so every checksum is fixed when this is built:
#
#   docroot/requests-agent_<version>_linux_<arch>.tar.gz  the requests agent
#   docroot/check_choria-<version>.tar.gz                 the check_choria machine
#   server-plugins.json  the external agents machine's manifest (requests)
#   kv-plugins.json      the CHORIA_PLUGINS bucket's manifest (check_choria)
#
# The manifests are unsigned: the plugin signer seed exists only at run time,
# so they are signed when a service starts (`choria-plugin-pack sign`), never
# here.
{
  lib,
  runCommand,
  choria-reference,
  topology,
}:

let
  pluginsHost = lib.findFirst (
    h: h.role == "plugins"
  ) (throw "the topology has no host with the role plugins") topology.hosts;
  port = topology.ports.plugins_http;

  # Where servers download the archives from, as in the namespace lab.
  baseURL =
    "http://${pluginsHost.name}.${topology.domain}"
    + lib.optionalString (port != 80) ":${toString port}";

  pack = lib.getExe' choria-reference "choria-plugin-pack";
in
runCommand "choria-plugins-${choria-reference.version}"
  {
    passthru = { inherit baseURL; };

    meta = {
      description = "Choria plugin archives (requests agent, check_choria) and their unsigned manifests";
      license = lib.licenses.asl20;
      platforms = lib.platforms.linux;
    };
  }
  ''
    # The archive names the platform of the binary it holds, read from its ELF header.
    ${pack} requests --binary ${lib.getExe' choria-reference "requests"} \
      --out-dir $out/docroot --base-url ${baseURL} --manifest $out/server-plugins.json
    ${pack} check-choria \
      --out-dir $out/docroot --base-url ${baseURL} --manifest $out/kv-plugins.json
  ''
