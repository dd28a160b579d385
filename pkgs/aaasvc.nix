# choria-io/aaasvc: authentication, authorization and audit for Choria.
# Its tags predate go-choria 0.29, so this is its default branch's latest
# commit, built with its own go.mod (go-choria v0.29.4): forcing a newer
# go-choria onto it does not compile.
{
  lib,
  buildGoModule,
  fetchFromGitHub,
}:

buildGoModule {
  pname = "aaasvc";
  # git describe: 0.7.0-15-g285c0ed
  version = "0.7.0-unstable-2025-04-22";

  src = fetchFromGitHub {
    owner = "choria-io";
    repo = "aaasvc";
    rev = "285c0ed51f8b14f258385cbae3b125a826b99890";
    hash = "sha256-9YfN3nRI+R81D6Ln1j9UxpFUbp/aNrO2yvSW9Wp+lAI=";
  };

  vendorHash = "sha256-/YjYpDs4WeJC9d4JCCY08YiDiFRjbZiCcfRhVTcAbMU=";

  subPackages = [ "." ];

  env.CGO_ENABLED = 0;

  # The version the packager gives untagged builds: 0.99.0.<commit date>.
  ldflags = [
    "-w"
    "-X github.com/choria-io/aaasvc/cmd.Version=0.99.0.20250422"
  ];

  # The tests need a Choria broker.
  doCheck = false;

  meta = {
    description = "Choria authentication, authorization and audit service";
    homepage = "https://github.com/choria-io/aaasvc";
    license = lib.licenses.asl20;
    mainProgram = "aaasvc";
    platforms = lib.platforms.linux;
  };
}
