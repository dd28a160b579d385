# choria-io/aaasvc: authentication, authorization and audit for Choria.
# Its tags predate go-choria 0.29, so the pin (upstream/pins.json, passed
# by flake.nix as `pin`) is its default branch's latest commit, built with
# its own go.mod (go-choria v0.29.4): forcing a newer go-choria onto it
# does not compile. Its version stamp is the packager's for untagged
# builds, 0.99.0.<commit date>.
{
  lib,
  buildGoModule,
  fetchFromGitHub,
  pin,
}:

buildGoModule {
  pname = "aaasvc";
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

  # The tests need a Choria broker.
  doCheck = false;

  meta = {
    description = "Choria authentication, authorization and audit service";
    homepage = "https://github.com/choria-io/aaasvc";
    license = lib.licenses.asl20;
    mainProgram = pin.binary;
    platforms = lib.platforms.linux;
  };
}
