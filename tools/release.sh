#!/usr/bin/env bash
# make release: builds the release binary and packages it as
#   dist/shoplake-<version>-<target>.tar.gz   shoplake, README.md, docs/, tables/, LICENSE (if present),
#                                             and sbom.cdx.json (the SBOM below)
#   dist/shoplake-<version>-<target>.cdx.json  CycloneDX 1.5 SBOM of the binary: every crate
#                                             compiled into it for <target> (cargo-cyclonedx,
#                                             from Cargo.lock; build scripts' dependencies left out)
#   dist/<each of the two>.sha256             in `sha256sum` format
# <version> is the shoplake package's version in Cargo.toml, <target> the
# host's target triple (`rustc -vV`), or $RELEASE_TARGET to cross-compile
# (its toolchain and linker must be set up already).
# CARGO_TARGET_DIR is honoured (relative paths are taken from the repository
# root). If RELEASE_TAG is set (CI, from the git tag), it must be
# v<version>. The archive is reproducible: sorted, owner 0, modification
# times from the last commit (SOURCE_DATE_EPOCH), gzip without a timestamp;
# the SBOM takes its timestamp from SOURCE_DATE_EPOCH too, and names the
# checkout as "." instead of its absolute path.
# cargo-cyclonedx is installed on first use (tools/install-release-tools.sh,
# cached in $SHOPLAKE_CACHE/tools; it compiles for a few minutes once).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

# The [package] version, or [workspace.package]'s if it says `version.workspace = true`.
version="$(awk '
  /^\[/ { section = $0; next }
  section == "[package]" && /^version *= *"/ { split($0, q, "\""); pkg = q[2] }
  section == "[package]" && /^version\.workspace *= *true/ { inherit = 1 }
  section == "[workspace.package]" && /^version *= *"/ { split($0, q, "\""); ws = q[2] }
  END { print (inherit ? ws : pkg) }' Cargo.toml)"
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "release: no version found in Cargo.toml ('$version')" >&2; exit 1; }

if [[ -n ${RELEASE_TAG:-} && $RELEASE_TAG != "v$version" ]]; then
  echo "release: the tag $RELEASE_TAG is not v$version (Cargo.toml's version): bump the version or fix the tag" >&2
  exit 1
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
target="${RELEASE_TARGET:-$host}"
target_dir="${CARGO_TARGET_DIR:-target}"
[[ $target_dir == /* ]] || target_dir="$root/$target_dir"
export CARGO_TARGET_DIR="$target_dir"

build=(cargo build --release --locked --bin shoplake)
bin="$target_dir/release/shoplake"
if [[ $target != "$host" ]]; then
  build+=(--target "$target")
  bin="$target_dir/$target/release/shoplake"
fi
echo "release: ${build[*]} (shoplake $version for $target)"
"${build[@]}"

# A smoke test of what is shipped, where it can run: it starts and says its version.
if [[ $target == "$host" ]]; then
  reported="$("$bin" --version)"
  [[ $reported == "shoplake $version (commit "* ]] || { echo "release: $bin --version says '$reported', expected 'shoplake $version (commit …)'" >&2; exit 1; }
fi

name="shoplake-$version-$target"
mkdir -p dist
stage="$(mktemp -d "$root/dist/.stage.XXXXXX")"
# cargo-cyclonedx writes its SBOM beside Cargo.toml (shoplake_bin.cdx.json).
trap 'rm -rf "$stage" "$root/shoplake_bin.cdx.json"' EXIT
mkdir "$stage/$name"
install -m 0755 "$bin" "$stage/$name/shoplake"
install -m 0644 README.md "$stage/$name/README.md"
# The documentation README.md links to, and the shipped table definitions.
cp -R docs tables "$stage/$name/"
for f in LICENSE LICENSE-APACHE LICENSE-MIT NOTICE; do
  if [[ -f $f ]]; then install -m 0644 "$f" "$stage/$name/$f"; fi
done

epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

# The SBOM of what was just built: the crates Cargo.lock resolves for the
# binary on this target (--locked built the same graph).
sbom_tools="$(./tools/install-release-tools.sh)"
rm -f shoplake_bin.cdx.json
SOURCE_DATE_EPOCH="$epoch" "$sbom_tools/cargo-cyclonedx" cyclonedx --manifest-path Cargo.toml --quiet \
  --format json --spec-version 1.5 --describe binaries --no-build-deps --target "$target"
[[ -s shoplake_bin.cdx.json ]] || { echo "release: cargo-cyclonedx wrote no shoplake_bin.cdx.json" >&2; exit 1; }
sbom="$(<shoplake_bin.cdx.json)"
printf '%s\n' "${sbom//"path+file://$root#"/path+file://.#}" >"dist/$name.cdx.json"
rm -f shoplake_bin.cdx.json
grep -q '"bomFormat": *"CycloneDX"' "dist/$name.cdx.json" || { echo "release: dist/$name.cdx.json is not a CycloneDX BOM" >&2; exit 1; }
install -m 0644 "dist/$name.cdx.json" "$stage/$name/sbom.cdx.json"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -C "$stage" -cf - "$name" | gzip -9 -n >"dist/$name.tar.gz"
(cd dist && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256" && sha256sum "$name.cdx.json" >"$name.cdx.json.sha256")

echo "release: dist/$name.tar.gz"
echo "release: dist/$name.tar.gz.sha256  $(cut -d' ' -f1 "dist/$name.tar.gz.sha256")"
echo "release: dist/$name.cdx.json ($(grep -c '"bom-ref"' "dist/$name.cdx.json") bom-refs; sbom.cdx.json in the tarball)"
