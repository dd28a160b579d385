# choria-io/stream-replicator: copies JetStream streams between NATS systems.
# Pinned in upstream/pins.json (`pin`, passed by flake.nix).
{
  lib,
  buildGoModule,
  fetchFromGitHub,
  pin,
}:

buildGoModule {
  pname = "stream-replicator";
  inherit (pin) version vendorHash ldflags;

  src = fetchFromGitHub {
    inherit (pin)
      owner
      repo
      rev
      hash
      ;
  };

  subPackages = [ pin.package ];

  env.CGO_ENABLED = 0;

  # The tests need NATS servers.
  doCheck = false;

  meta = {
    description = "Choria Stream Replicator: copies JetStream streams between NATS systems";
    homepage = "https://github.com/choria-io/stream-replicator";
    changelog = "https://github.com/choria-io/stream-replicator/releases/tag/${pin.tag}";
    license = lib.licenses.asl20;
    mainProgram = pin.binary;
    platforms = lib.platforms.linux;
  };
}
