# A file:// GOPROXY holding one Go module version, made from its source tree.
#
# For a module version the public module proxy does not serve (go-choria
# v0.30.2 needs github.com/choria-io/appbuilder v0.17.1, which
# proxy.golang.org refuses). The zip is laid out as the go command's own
# golang.org/x/mod/zip.CreateFromDir lays it out: regular files only (no
# symbolic links), no VCS directories, no nested modules (directories with a
# go.mod of their own), no files in vendored packages. Its h1: checksum,
# computed here the way golang.org/x/mod/sumdb/dirhash.Hash1 does, must equal
# `sum` (the line in the consumer's go.sum), or the build stops; the go
# command verifies it against go.sum once more when it downloads the module.
{
  lib,
  stdenvNoCC,
  zip,
}:

{
  modulePath,
  version,
  src,
  # The module's h1: line from the consuming module's go.sum.
  sum,
  # The .info Time field: the tagged commit's time, RFC 3339, UTC.
  time,
}:

# The go command escapes upper-case letters in proxy paths; not needed so far.
assert lib.assertMsg (
  lib.toLower modulePath == modulePath
) "go-module-proxy: ${modulePath} has upper-case letters";

stdenvNoCC.mkDerivation {
  pname = "goproxy-" + lib.replaceStrings [ "/" ] [ "-" ] modulePath;
  inherit version src;

  nativeBuildInputs = [ zip ];

  dontConfigure = true;

  buildPhase = ''
    runHook preBuild

    srcDir=$PWD
    prefix=${lib.escapeShellArg "${modulePath}@${version}"}
    staging=$TMPDIR/staging
    mkdir -p "$staging/$prefix"

    # The files CreateFromDir would keep, NUL-separated.
    find . -mindepth 1 \
      \( -type d \( -name .bzr -o -name .git -o -name .hg -o -name .svn \
                    -o -exec test -e '{}/go.mod' ';' \) -prune \) \
      -o \( -type f ! -regex '\(.*/\)?vendor/.*/.*' -print0 \) \
      | tar --null --files-from=- -cf - | tar -xf - -C "$staging/$prefix"

    cd "$staging"
    got=h1:$(find "$prefix" -type f -print0 | LC_ALL=C sort -z \
      | while IFS= read -r -d "" f; do
          printf '%s  %s\n' "$(sha256sum < "$f" | cut -c1-64)" "$f"
        done \
      | sha256sum | cut -c1-64 | tr a-f A-F | basenc --base16 -d | base64)
    if [ "$got" != ${lib.escapeShellArg sum} ]; then
      echo "module ${modulePath}@${version}: checksum $got, but go.sum says ${sum}" >&2
      exit 1
    fi

    dir=$out/${lib.escapeShellArg modulePath}/@v
    mkdir -p "$dir"
    # -D: no directory entries (they would change the h1: checksum).
    find "$prefix" -type f | LC_ALL=C sort | zip -X -D -q "$dir/${version}.zip" -@
    cp "$srcDir/go.mod" "$dir/${version}.mod"
    printf '{"Version":"%s","Time":"%s"}\n' ${lib.escapeShellArg version} ${lib.escapeShellArg time} > "$dir/${version}.info"
    echo ${lib.escapeShellArg version} > "$dir/list"

    runHook postBuild
  '';

  dontInstall = true;
  dontFixup = true;

  meta = {
    description = "file:// Go module proxy serving ${modulePath}@${version}";
    platforms = lib.platforms.all;
  };
}
