# upstream/pins.json, the one file that pins the upstream programs for Nix
# and for `choria-lab build-upstream`, with @version@ and @rev@ substituted
# in each source's ldflags as the builder substitutes them.
{ lib }:

let
  pins = lib.importJSON ../upstream/pins.json;
in
pins
// {
  sources = lib.mapAttrs (
    _: pin:
    pin
    // {
      ldflags = map (lib.replaceStrings [ "@version@" "@rev@" ] [ pin.version pin.rev ]) pin.ldflags;
    }
  ) pins.sources;
}
