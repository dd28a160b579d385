# choria-io/provisioner: provisions Choria servers through a helper program.
{
  lib,
  buildGoModule,
  fetchFromGitHub,
}:

buildGoModule rec {
  pname = "choria-provisioner";
  version = "0.16.0";

  src = fetchFromGitHub {
    owner = "choria-io";
    repo = "provisioner";
    rev = "aca2b6263842723e8d6eb6a20c38123d7e429bcf"; # tag v0.16.0
    hash = "sha256-KFTVLfeeIL71i8dBgsOvPiIys7LyhjZfwqgqBkUOHXM=";
  };

  vendorHash = "sha256-YT/jnu22Hc8lp41GNUE/DHj10B/5pEd4RurHBbEOLug=";

  subPackages = [ "." ];

  env.CGO_ENABLED = 0;

  # packager/buildspec.yaml's flags_map also names cmd.sha, which v0.16.0
  # does not have; setting it would do nothing.
  ldflags = [
    "-w"
    "-X github.com/choria-io/provisioner/config.Version=${version}"
  ];

  # Released as choria-provisioner; the module path ends in "provisioner".
  postInstall = ''
    mv $out/bin/provisioner $out/bin/choria-provisioner
  '';

  # The tests need a Choria broker.
  doCheck = false;

  meta = {
    description = "Choria server provisioner";
    homepage = "https://github.com/choria-io/provisioner";
    changelog = "https://github.com/choria-io/provisioner/releases/tag/v${version}";
    license = lib.licenses.asl20;
    mainProgram = "choria-provisioner";
    platforms = lib.platforms.linux;
  };
}
