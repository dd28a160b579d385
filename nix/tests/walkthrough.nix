# The walkthrough as a NixOS VM test (lab-vms.nix): one VM per host of the
# topology, with `serverCount` servers. After common.py has brought the lab
# up, walkthrough.py runs the steps of the shared walkthrough scenario
# (walkthrough/scenario.json), the file the Go runner embeds.
#
# `checks.<system>.walkthrough` runs it; `nix run .#lab-vms` starts the same
# VMs under the interactive driver.
{
  lib,
  callPackage,
  nixosModules,
  topology,
  # walkthrough/scenario.json, or null where the repository has none yet.
  # (Names no nixpkgs attribute has, as callPackage would fill them.)
  scenarioFile ? null,
  serverCount ? 3,
}:

callPackage ./lab-vms.nix { inherit nixosModules; } {
  name = "choria-walkthrough";
  topo = topology // {
    servers = topology.servers // {
      count = serverCount;
    };
  };
  script = builtins.readFile ./scenario.py + builtins.readFile ./walkthrough.py;
  extraFacts.scenario = if scenarioFile == null then null else "${scenarioFile}";
  # For the ed25519 check of signed submissions.
  extraPythonPackages = p: [ p.cryptography ];
}
