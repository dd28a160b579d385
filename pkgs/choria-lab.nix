# `nix run .#lab`: the namespace lab (choria-lab, from choria-reference) with
# every upstream program it runs, and the tools it and the tour's commands
# need, on its PATH: the lab's hosts get that PATH and nothing else (on
# NixOS /bin and /usr/bin hold only sh and env).
{
  lib,
  stdenvNoCC,
  makeWrapper,
  choria-reference,
  choria,
  choria-provisioner,
  aaasvc,
  stream-replicator,
  nats-server,
  natscli,
  util-linux,
  iproute2,
  bashInteractive,
  coreutils,
  gnugrep,
  gnused,
  gawk,
  gnutar,
  gzip,
}:

stdenvNoCC.mkDerivation {
  pname = "choria-lab";
  inherit (choria-reference) version;

  dontUnpack = true;

  nativeBuildInputs = [ makeWrapper ];

  # choria-reference first: the lab also runs choria-bootstrap,
  # choria-provision-helper and the node programs.
  installPhase = ''
    runHook preInstall
    makeWrapper ${choria-reference}/bin/choria-lab $out/bin/choria-lab \
      --prefix PATH : ${
        lib.makeBinPath [
          choria-reference
          choria
          choria-provisioner
          aaasvc
          stream-replicator
          nats-server
          natscli
          util-linux # nsenter, setpriv
          iproute2
          # the hosts' shells and the walkthrough's commands
          bashInteractive
          coreutils
          gnugrep
          gnused
          gawk
          gnutar
          gzip
        ]
      }
    runHook postInstall
  '';

  meta = {
    description = "The Choria reference deployment on Linux namespaces, with the upstream programs";
    license = lib.licenses.asl20;
    mainProgram = "choria-lab";
    platforms = lib.platforms.linux;
  };
}
