#!/usr/bin/env bash
# make lineage-test: shoplake's OpenLineage events against openlineage-python's generated classes,
# and the pinned OpenLineage JSON schemas when a copy is provided (none on a fresh machine).
#
#   - installs, once, outside the clone (lineage/setup.sh): a Python 3.11 venv from PyPI with
#     openlineage-python 1.54.0, jsonschema and pytest, and, when a copy is at hand, the
#     OpenLineage JSON schemas pinned by lineage/spec.lock.json (size + SHA-256 of each file);
#   - validates every event (lineage/olvalidate.py) by structuring it into openlineage-python's
#     generated classes, strictly (the `classes` layer, always), and against the pinned JSON
#     schemas (the `json-schema` layer, when installed): it says which ran, first and last;
#     LINEAGE_SPEC_MODE=require fails without the schemas, =skip runs the classes alone;
#   - tests the validator itself (lineage/tests/test_validator.py): good events pass, each
#     kind of broken one fails in each layer, nothing is fetched;
#   - runs the built binary on generated exports (lineage/tests/test_shoplake.py):
#     success, identical re-run, missing export (3), bad header (4), SIGTERM/SIGINT
#     while reading, a 3-date back-fill, --all-tables, the Airflow parent from the
#     environment, an HTTP receiver of its own on 127.0.0.1 that must get exactly the
#     file's events with the bearer token, and failing transports (down, 500, hanging,
#     unwritable file) that may only warn and cost at most LINEAGE_MAX_DELAY (10) s;
#     every event is validated and checked against the run report.
#
# The binary is $SHOPLAKE_BIN, else $CARGO_TARGET_DIR/debug/shoplake, else
# $HOME/.cache/shoplake/target/debug/shoplake. A binary without --lineage-file fails
# every scenario (never skipped). Ends with pytest's "N passed, N failed" line; exits
# non-zero if anything failed. KEEP_TMP=1 keeps the work directory (kept anyway when
# a test fails). Extra arguments go to pytest (e.g. -k backfill).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}"
bin="${SHOPLAKE_BIN:-${CARGO_TARGET_DIR:-$cache/target}/debug/shoplake}"

eval "$("$here/setup.sh")"
"$LINEAGE_PY" "$here/olvalidate.py" status
export LINEAGE_SPEC_MODE="${LINEAGE_SPEC_MODE:-auto}"

if [[ ! -x $bin ]]; then
  echo "lineage-test: no shoplake binary at $bin: every scenario will fail (build it, or set SHOPLAKE_BIN)"
elif ! "$bin" ingest --help 2>/dev/null | grep -q -- --lineage-file; then
  echo "lineage-test: $bin has no --lineage-file yet (issue #18): every scenario will fail"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/shoplake-lineage.XXXXXX")"
rc=0
SHOPLAKE_BIN="$bin" LINEAGE_WORK="$tmp/work" \
  "$LINEAGE_PY" -m pytest -p no:cacheprovider -q -rfEs --durations=5 "$here/tests" "$@" || rc=$?
# The 1M-row export and the tables loaded from it are hundreds of MB: never kept.
rm -rf "$tmp/work/big" "$tmp"/work/abort_SIG*/
if [[ $rc -eq 0 && -z ${KEEP_TMP:-} ]]; then
  rm -rf "$tmp"
else
  echo "work directory kept: $tmp (events: $tmp/work/*.events.jsonl, validate with: $LINEAGE_PY $here/olvalidate.py check FILE)"
fi
exit "$rc"
