# go-choria: the `choria` program (broker, server, client), built the way
# its release builds are (packager/buildspec.yaml): plugin registrations
# generated first, build information and the provisioning token path set by
# -ldflags. See the README's "Upstream packages" for how each hash was made.
{
  lib,
  buildGoModule,
  fetchFromGitHub,
  mkGoModuleProxy,
}:

let
  version = "0.30.2";
  rev = "58e80bab58a53d38576238baa011123d5f9eff59";
  # The commit time in UTC, as the packager formats BuildTime ("%F %T %z").
  buildDate = "2026-06-15 09:31:48 +0000";

  # github.com/choria-io/appbuilder v0.17.1 is required by go-choria's cmd
  # package, and the public Go module proxy does not serve it. It is built
  # from its tag into a file:// proxy placed before the default one while
  # the modules are vendored; its checksum is verified against go.sum.
  appbuilderProxy = mkGoModuleProxy {
    modulePath = "github.com/choria-io/appbuilder";
    version = "v0.17.1";
    src = fetchFromGitHub {
      owner = "choria-io";
      repo = "appbuilder";
      rev = "29b28319f5f05577d20557686eaf8a0e280de803"; # tag v0.17.1
      hash = "sha256-TFHstudo5i1ez9jcbIsRKjdPiO9/59FGfCKl4ouI9KA=";
    };
    sum = "h1:3castUYqKzb3KpsGNMLM9tA0UTasdtWmMCN6QZa9zGs=";
    time = "2026-06-09T20:38:20Z";
  };

  buildVar = name: value: "-X 'github.com/choria-io/go-choria/build.${name}=${value}'";
in
buildGoModule {
  pname = "choria";
  inherit version;

  src = fetchFromGitHub {
    owner = "choria-io";
    repo = "go-choria";
    inherit rev; # tag v0.30.2
    hash = "sha256-5lKASDP4ZxvleztakcL/crVnz5r9c2B8Vb8euiB6vjo=";
  };

  # The vendor tree is the same before and after plugin generation.
  vendorHash = "sha256-ESc7+6HtHXSkC5K3xhBGE9x/keJP9Q04c62pFto9Qk0=";

  overrideModAttrs = finalAttrs: previousAttrs: {
    # Replaces the inherited preBuild (plugin generation needs the vendor
    # tree this derivation makes). A GOPROXY from the environment (an
    # impure variable of this fixed-output derivation) is kept after ours.
    preBuild = ''
      export GOPROXY="file://${appbuilderProxy},''${GOPROXY:-https://proxy.golang.org,direct}"
    '';
  };

  subPackages = [ "." ];

  env.CGO_ENABLED = 0;

  # packager/buildspec.yaml "pre" steps: without the generated plugin_*.go
  # the binary has no provisioning agent, registry, Scout or autonomous
  # agent watchers. The generator stamps a wall-clock time into each file's
  # first line; it is removed so that rebuilds are identical.
  preBuild = ''
    rm -f additional_agent_*.go plugin_*.go
    go generate -run plugin
    sed -i '1s|^// auto generated .*|// auto generated|' plugin_*.go
  '';

  ldflags = [
    "-w"
    (buildVar "Version" version)
    (buildVar "SHA" rev)
    (buildVar "BuildDate" buildDate)
    # With it, a server with no configuration starts provisioning from the
    # token at this path, as official Linux builds do.
    (buildVar "ProvisionJWTFile" "/etc/choria/provisioning.jwt")
    (buildVar "DefaultCollectives" "mcollective")
    (buildVar "ClientIdentitySuffix" "mcollective")
  ];

  # The binary is named after the module path's last element.
  postInstall = ''
    mv $out/bin/go-choria $out/bin/choria
  '';

  # The test suite needs a network and a running broker.
  doCheck = false;

  passthru = { inherit appbuilderProxy; };

  meta = {
    description = "Choria orchestration system: broker, server and client";
    homepage = "https://choria.io";
    changelog = "https://github.com/choria-io/go-choria/releases/tag/v${version}";
    license = lib.licenses.asl20;
    mainProgram = "choria";
    platforms = lib.platforms.linux;
  };
}
