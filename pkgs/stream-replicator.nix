# choria-io/stream-replicator: copies JetStream streams between NATS systems.
{
  lib,
  buildGoModule,
  fetchFromGitHub,
}:

let
  version = "0.9.0";
  rev = "d749631676fe6c4d47d5bb8713bd327c8ed53687"; # tag v0.9.0
in
buildGoModule {
  pname = "stream-replicator";
  inherit version;

  src = fetchFromGitHub {
    owner = "choria-io";
    repo = "stream-replicator";
    inherit rev;
    hash = "sha256-AFLcdHQxf2RH0Z9lWsrovr5SuJGSKMpo9RvvdNr4UEw=";
  };

  vendorHash = "sha256-Tx5HyQs1t2NeLbhTevO4w8n1BpKKyaBnM/6AIt6M3b8=";

  subPackages = [ "." ];

  env.CGO_ENABLED = 0;

  ldflags = [
    "-w"
    "-X github.com/choria-io/stream-replicator/cmd.version=${version}"
    "-X github.com/choria-io/stream-replicator/cmd.sha=${rev}"
  ];

  # The tests need NATS servers.
  doCheck = false;

  meta = {
    description = "Choria Stream Replicator: copies JetStream streams between NATS systems";
    homepage = "https://github.com/choria-io/stream-replicator";
    changelog = "https://github.com/choria-io/stream-replicator/releases/tag/v${version}";
    license = lib.licenses.asl20;
    mainProgram = "stream-replicator";
    platforms = lib.platforms.linux;
  };
}
