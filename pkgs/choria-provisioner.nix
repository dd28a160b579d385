# choria-io/provisioner: provisions Choria servers through a helper program.
# Pinned in upstream/pins.json (`pin`, passed by flake.nix).
{
  lib,
  buildGoModule,
  fetchFromGitHub,
  pin,
}:

buildGoModule {
  pname = "choria-provisioner";
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

  # Released as choria-provisioner; the module path ends in "provisioner".
  postInstall = ''
    mv $out/bin/provisioner $out/bin/${pin.binary}
  '';

  # The tests need a Choria broker.
  doCheck = false;

  meta = {
    description = "Choria server provisioner";
    homepage = "https://github.com/choria-io/provisioner";
    changelog = "https://github.com/choria-io/provisioner/releases/tag/${pin.tag}";
    license = lib.licenses.asl20;
    mainProgram = pin.binary;
    platforms = lib.platforms.linux;
  };
}
