# go-choria: the `choria` program (broker, server and client), built the
# way its release builds are (packager/buildspec.yaml): plugin
# registrations generated first, build information and the provisioning
# token path set by -ldflags. Pinned in upstream/pins.json: `pin` is its
# go-choria entry, `appbuilder` the module proxy it needs (both passed by
# flake.nix). See the README's "Upstream packages" for how each hash was
# made.
{
  lib,
  buildGoModule,
  fetchFromGitHub,
  mkGoModuleProxy,
  pin,
  appbuilder,
}:

let
  # github.com/choria-io/appbuilder v0.17.1 is required by go-choria's cmd
  # package, and the public Go module proxy does not serve it. It is built
  # from its tag into a file:// proxy placed before the default one while
  # the modules are vendored; its checksum is verified against go.sum.
  appbuilderProxy = mkGoModuleProxy {
    inherit (appbuilder)
      modulePath
      version
      sum
      time
      ;
    src = fetchFromGitHub {
      inherit (appbuilder)
        owner
        repo
        rev
        hash
        ;
    };
  };

  # packager/buildspec.yaml "pre" steps: without the generated plugin_*.go
  # the binary has no provisioning agent, registry, Scout or autonomous
  # agent watchers. The generator stamps a wall-clock time into each file's
  # first line; it is removed so that rebuilds are identical.
  generate = lib.optionalString (pin.generate != null) ''
    rm -f ${lib.concatStringsSep " " pin.generate.remove}
    go generate -run ${lib.escapeShellArg pin.generate.run}
    sed -i '1s|^// auto generated .*|// auto generated|' ${lib.concatStringsSep " " pin.generate.stamped}
  '';
in
buildGoModule {
  pname = "choria";
  inherit (pin) version vendorHash ldflags;

  src = fetchFromGitHub {
    inherit (pin)
      owner
      repo
      rev
      hash
      ;
  };

  overrideModAttrs = finalAttrs: previousAttrs: {
    # Replaces the inherited preBuild (plugin generation needs the vendor
    # tree this derivation makes; the vendor tree is the same before and
    # after it). A GOPROXY from the environment (an impure variable of
    # this fixed-output derivation) is kept after ours.
    preBuild = ''
      export GOPROXY="file://${appbuilderProxy},''${GOPROXY:-https://proxy.golang.org,direct}"
    '';
  };

  subPackages = [ pin.package ];

  env.CGO_ENABLED = 0;

  preBuild = generate;

  # The binary is named after the module path's last element.
  postInstall = ''
    mv $out/bin/go-choria $out/bin/${pin.binary}
  '';

  # The test suite needs a network and a running broker.
  doCheck = false;

  passthru = { inherit appbuilderProxy; };

  meta = {
    description = "Choria orchestration system: broker, server and client";
    homepage = "https://choria.io";
    changelog = "https://github.com/choria-io/go-choria/releases/tag/${pin.tag}";
    license = lib.licenses.asl20;
    mainProgram = pin.binary;
    platforms = lib.platforms.linux;
  };
}
