#!/usr/bin/env bash
# Installs cargo-cyclonedx, which `make release` (tools/release.sh) uses to
# write the CycloneDX SBOM of the release, cached outside the clone:
#   $SHOPLAKE_CACHE/tools/bin/cargo-cyclonedx   cargo install --locked (crates.io)
# No registry reachable here ships a prebuilt cargo-cyclonedx, so it is
# compiled once (a few minutes on 2 cores, at nice 19 with one job so a Rust
# build beside it keeps the cores) in its own target directory, which is
# removed afterwards. SHOPLAKE_CACHE defaults to $HOME/.cache/shoplake.
# Idempotent: a warm run only checks the version marker. Prints the directory
# to put on PATH.
set -euo pipefail

CARGO_CYCLONEDX_VERSION=0.5.9

cache="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}"
tools="$cache/tools"
mkdir -p "$tools/bin"

# Two runs at once (a developer and CI) must not install at the same time.
exec 9>"$tools/release-tools.lock"
flock 9

log() { printf 'install-release-tools: %s\n' "$*" >&2; }

marker="$tools/bin/.cargo-cyclonedx-$CARGO_CYCLONEDX_VERSION"
if [[ ! -x "$tools/bin/cargo-cyclonedx" || ! -e $marker ]]; then
  log "cargo-cyclonedx $CARGO_CYCLONEDX_VERSION (cargo install --locked; compiles for a few minutes)"
  build_dir="$tools/build-cargo-cyclonedx"
  rm -rf "$build_dir"
  # Its own target directory: the project's (CARGO_TARGET_DIR) stays untouched
  # and unlocked for the build beside it.
  CARGO_TARGET_DIR="$build_dir" nice -n 19 cargo install --quiet --locked --jobs "${SHOPLAKE_TOOL_JOBS:-1}" \
    --root "$tools" --version "$CARGO_CYCLONEDX_VERSION" cargo-cyclonedx
  rm -rf "$build_dir"
  rm -f "$tools/bin"/.cargo-cyclonedx-*
  "$tools/bin/cargo-cyclonedx" cyclonedx --version >/dev/null
  touch "$marker"
fi

echo "$tools/bin"
