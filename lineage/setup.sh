#!/usr/bin/env bash
# Installs what the lineage tier (lineage/test.sh) needs, outside the clone, once:
#
#   $SHOPLAKE_CACHE/lineage/venv   Python 3.11 venv from PyPI: openlineage-python 1.54.0 (its
#                                  generated classes validate every event: olvalidate.py's
#                                  `classes` layer), jsonschema + referencing (shoplake's own
#                                  facet; the `json-schema` layer), pytest
#   $SHOPLAKE_CACHE/lineage/spec   optional: the OpenLineage JSON schemas of lineage/spec.lock.json,
#                                  laid out as openlineage.io/spec/ serves them, each checked
#                                  against the lock's size and SHA-256 (the `json-schema` layer)
#
# (SHOPLAKE_CACHE defaults to $HOME/.cache/shoplake.) No package on the registries this
# project reaches ships the schema files (lineage/README.md, "Where the schemas come
# from"), and nothing is fetched: they are copied from the first of these folders that
# holds all of them with the lock's bytes,
#   $SHOPLAKE_OPENLINEAGE_SPEC_SRC, $SHOPLAKE_CACHE/lineage/openlineage-spec-src
# (no other folder is looked at), and without one the tier runs the `classes` layer
# alone, saying so (LINEAGE_SPEC_MODE=require makes that an error instead). A warm run
# installs nothing.
# Prints `export LINEAGE_PY=... LINEAGE_SPEC=installed|absent` for `eval`.
#
#   lineage/setup.sh            # install if needed, print the environment
#   lineage/setup.sh --check    # exit 1 (silently) unless the venv is there
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
CACHE=${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}
VENV=$CACHE/lineage/venv
PIP_SPEC=("jsonschema==4.26.0" "referencing==0.37.0" "pytest==8.3.4" "openlineage-python==1.54.0")

log() { echo "[lineage-setup] $*" >&2; }

venv_ok() { [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.shoplake-installed" 2>/dev/null)" = "${PIP_SPEC[*]}" ]; }

if [ "${1:-}" = "--check" ]; then
  venv_ok
  exit
fi

mkdir -p "$CACHE/lineage"
# make test and a hand-run tier may start on a cold machine together.
exec 8>"$CACHE/lineage/install.lock"
flock 8

if ! venv_ok; then
  py=${SHOPLAKE_PYTHON311:-python3.11}
  command -v "$py" >/dev/null || { log "python3.11 not found (set SHOPLAKE_PYTHON311)"; exit 3; }
  log "installing ${PIP_SPEC[*]} into $VENV"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_SPEC[@]}"
  echo "${PIP_SPEC[*]}" > "$VENV/.shoplake-installed"
fi

spec=installed
if ! "$VENV/bin/python" "$here/olvalidate.py" verify >/dev/null 2>&1; then
  sources=()
  [ -n "${SHOPLAKE_OPENLINEAGE_SPEC_SRC:-}" ] && sources+=(--from "$SHOPLAKE_OPENLINEAGE_SPEC_SRC")
  sources+=(--from "$CACHE/lineage/openlineage-spec-src")
  if "$VENV/bin/python" "$here/olvalidate.py" install "${sources[@]}" >"$CACHE/lineage/spec-install.log" 2>&1; then
    log "$(tail -n1 "$CACHE/lineage/spec-install.log")"
  else
    spec=absent
    log "no copy of the OpenLineage JSON schemas of spec.lock.json at hand (nothing is fetched):"
    sed 's/^/[lineage-setup]   /' "$CACHE/lineage/spec-install.log" >&2
    if [ "${LINEAGE_SPEC_MODE:-auto}" = require ]; then
      log "LINEAGE_SPEC_MODE=require: the json-schema layer is required"
      exit 4
    fi
    log "events are validated by openlineage-python ${PIP_SPEC[3]#*==}'s generated classes alone (the classes layer)"
  fi
fi

printf 'export LINEAGE_PY=%q LINEAGE_SPEC=%q\n' "$VENV/bin/python" "$spec"
