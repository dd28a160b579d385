# Evaluates nix/images.nix with nixpkgs' own `lib` and stand-ins that
# record their arguments, for TestComposeRunsTheWalkthrough: each
# dockerTools.streamLayeredImage call reports what it was given, and every
# derivation an image can hold says what it is, so the test can lay the
# image's root out as dockerTools would (contents linked in, extraCommands
# and fakeRootCommands run) and look at it.
#
# Stand-in kinds (`standIn.kind`):
#   package     a nixpkgs or upstream package: `programs`, the names in its
#               bin/ (for nixpkgs' GNU packages, those both nixpkgs and
#               Debian install; upstream programs as pkgs/*.nix name them)
#   ours        choria-reference: the test builds cmd/ into its bin/
#   runCommand  `script`, run with $out set
#   bin         writeShellScriptBin: bin/`name` holding `text`
#   tree        `files`: relative path to content
# Stand-in store paths are /nix/store/<32 hex>-<name>; the test maps each
# to a directory of its own.
{
  nixpkgsLib,
  root,
  # merged into the repository's topology (lib.recursiveUpdate)
  topologyOverride ? { },
}:

let
  lib = import nixpkgsLib;

  standIn = name: standIn: {
    type = "derivation";
    inherit name standIn;
    version = "0";
    outPath = "/nix/store/${
      builtins.substring 0 32 (builtins.hashString "sha256" (name + builtins.toJSON standIn))
    }-${name}";
  };

  words = s: builtins.filter (w: builtins.isString w && w != "") (builtins.split "[[:space:]]+" s);

  package =
    name: programs:
    standIn name {
      kind = "package";
      inherit programs;
    };

  topology = lib.recursiveUpdate (lib.importJSON (root + "/topology/topology.json")) topologyOverride;

  choria-reference = standIn "choria-reference" { kind = "ours"; };

  runCommand =
    name: env: script:
    standIn name {
      kind = "runCommand";
      inherit script;
    }
    // (env.passthru or { });

  dockerTools = {
    streamLayeredImage = args: {
      inherit (args) name;
      imageArgs = args;
      # dockerTools' default tag is the hash of the image's configuration.
      imageTag =
        if args.tag or null != null then
          args.tag
        else
          builtins.substring 0 32 (builtins.hashString "sha256" (builtins.toJSON args));
      outPath = "/nix/store/${
        builtins.substring 0 32 (builtins.hashString "sha256" args.name)
      }-stream-${args.name}";
    };
    caCertificates = standIn "ca-certificates" {
      kind = "tree";
      files."etc/ssl/certs/ca-bundle.crt" = "";
    };
  };

  # pkgs/build-support/fake-nss: root and nobody, and the lines given.
  fakeNss.override =
    {
      extraPasswdLines ? [ ],
      extraGroupLines ? [ ],
    }:
    standIn "fake-nss" {
      kind = "tree";
      files = {
        "etc/passwd" = lib.concatMapStrings (l: l + "\n") (
          [
            "root:x:0:0:root user:/var/empty:/bin/sh"
            "nobody:x:65534:65534:nobody:/var/empty:/bin/sh"
          ]
          ++ extraPasswdLines
        );
        "etc/group" = lib.concatMapStrings (l: l + "\n") (
          [
            "root:x:0:"
            "nobody:x:65534:"
          ]
          ++ extraGroupLines
        );
        "etc/nsswitch.conf" = "hosts: files dns\n";
      };
    };

  args = {
    inherit
      lib
      dockerTools
      fakeNss
      runCommand
      topology
      choria-reference
      ;
    writeShellScriptBin =
      name: text:
      standIn name {
        kind = "bin";
        inherit text;
      };
    # GNU coreutils 9, less Debian's own additions.
    coreutils = package "coreutils" (
      words "[ arch b2sum base32 base64 basename basenc cat chcon chgrp chmod chown cksum comm cp csplit cut date dd df dir dircolors dirname du echo env expand expr factor false fmt fold groups head hostid id install join link ln logname ls md5sum mkdir mkfifo mknod mktemp mv nice nl nohup nproc numfmt od paste pathchk pinky pr printenv printf ptx pwd readlink realpath rm rmdir runcon seq sha1sum sha224sum sha256sum sha384sum sha512sum shred shuf sleep sort split stat stdbuf stty sum sync tac tail tee test timeout touch tr true truncate tsort tty uname unexpand uniq unlink users vdir wc who whoami yes"
    );
    bashInteractive = package "bash-interactive" [
      "bash"
      "sh"
      "bashbug"
    ];
    gnugrep = package "gnugrep" [
      "grep"
      "egrep"
      "fgrep"
    ];
    gnused = package "gnused" [ "sed" ];
    gawk = package "gawk" [
      "awk"
      "gawk"
    ];
    gnutar = package "gnutar" [ "tar" ];
    gzip = package "gzip" (
      words "gunzip gzexe gzip uncompress zcat zcmp zdiff zegrep zfgrep zforce zgrep zless zmore znew"
    );
    nats-server = package "nats-server" [ "nats-server" ];
    natscli = package "natscli" [ "nats" ];
    choria = package "choria" [ "choria" ];
    choria-provisioner = package "choria-provisioner" [ "choria-provisioner" ];
    aaasvc = package "aaasvc" [ "aaasvc" ];
    stream-replicator = package "stream-replicator" [ "stream-replicator" ];
    # The real package's build script, run by the test with our packager.
    choria-plugins = import (root + "/pkgs/choria-plugins.nix") {
      inherit
        lib
        runCommand
        choria-reference
        topology
        ;
    };
  };

  images = import (root + "/nix/images.nix") args;
  roles = lib.filterAttrs (_: i: i ? imageArgs) images;

  # Every stand-in a contents list, a tree or a script can name, by path.
  known = lib.filter (v: v ? standIn) (
    lib.attrValues args ++ lib.concatMap (i: i.imageArgs.contents) (lib.attrValues roles)
  );
in
{
  images = lib.mapAttrs (_: i: {
    inherit (i) imageTag;
    tag = i.imageArgs.tag or null;
    inherit (i.imageArgs)
      name
      config
      extraCommands
      fakeRootCommands
      ;
    contents = map (c: c.outPath) i.imageArgs.contents;
  }) roles;

  load = {
    inherit (images.load) name;
    inherit (images.load.standIn) text;
  };

  standIns = lib.listToAttrs (
    map (v: lib.nameValuePair v.outPath (v.standIn // { inherit (v) name; })) known
  );
}
