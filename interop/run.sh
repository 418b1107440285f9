#!/usr/bin/env bash
# `make interop-test`: Spark 3.5.7 + Delta 3.3.2 against shoplake's tables,
# locally and on MinIO through s3a://, and Python deltalake 1.6.6 writing to
# local ones (interop/tests; see interop/README.md).
#
# Installs (once, cached outside the clone by interop/setup.sh) a Python 3.11
# venv with pyspark, delta-spark and deltalake, and the Delta/S3A jars from
# Maven Central; starts MinIO with localstack/services.sh unless it already
# runs (and stops it again only if it started it). Needs Java 17 (or 8/11),
# python3.11, mvn once.
#
#   SHOPLAKE_BIN   the binary under test (default $CARGO_TARGET_DIR/debug/shoplake)
#   INTEROP_S3=0   local tables only (no MinIO)
#   INTEROP_KEEP=1 keep the scratch directory ($INTEROP_WORK, default a mktemp dir)
#   extra arguments go to pytest, e.g.  interop/run.sh -k reads -x
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}
export SHOPLAKE_BIN=${SHOPLAKE_BIN:-${CARGO_TARGET_DIR:-$CACHE/target}/debug/shoplake}
log() { echo "[interop] $*" >&2; }

if ! command -v java >/dev/null; then
  log "FAILED: java not found; the Spark interop test needs a JDK (17: apt-get install openjdk-17-jre-headless)"
  exit 3
fi
eval "$(nice -n 10 interop/setup.sh)"

# The binary is rebuilt from time to time: wait a little for it.
for _ in $(seq 1 60); do [ -x "$SHOPLAKE_BIN" ] && break; sleep 5; done
[ -x "$SHOPLAKE_BIN" ] || { log "FAILED: $SHOPLAKE_BIN not found (make build, or set SHOPLAKE_BIN)"; exit 3; }

export INTEROP_WORK=${INTEROP_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/shoplake-interop.XXXXXX")}
mkdir -p "$INTEROP_WORK"
services=./localstack/services.sh
started_minio=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ -n "$started_minio" ]; then "$services" stop minio || true; fi
  if [ -z "${INTEROP_KEEP:-}" ]; then rm -rf "$INTEROP_WORK"; else log "kept $INTEROP_WORK"; fi
}
trap cleanup EXIT

if [ "${INTEROP_S3:-1}" != 0 ]; then
  if curl -fsS --noproxy '*' --max-time 2 -o /dev/null http://127.0.0.1:9000/minio/health/ready 2>/dev/null; then
    log "MinIO already running: using it"
    "$services" wait minio >&2
  else
    started_minio=1
    "$services" start minio >&2
  fi
  eval "$("$services" env)"
  export INTEROP_REQUIRE_S3=1
else
  log "INTEROP_S3=0: the s3a half is skipped"
fi

export SPARK_LOCAL_IP=127.0.0.1 PYTHONDONTWRITEBYTECODE=1
log "shoplake: $SHOPLAKE_BIN; scratch: $INTEROP_WORK"
status=0
nice -n 10 "$SPARK_PY" -m pytest -c interop/pytest.ini --rootdir interop interop/tests "$@" || status=$?
if [ -f "$INTEROP_WORK/protocol.json" ]; then
  # {table: {"protocol": ..., "configuration": ...}} (tests/test_protocol.py)
  "$SPARK_PY" -c 'import json, sys
for name, seen in json.load(open(sys.argv[1])).items():
    print("[interop] protocol of a table shoplake creates (%s): %s" % (name, json.dumps(seen["protocol"])))' \
    "$INTEROP_WORK/protocol.json" >&2 || true
fi
exit "$status"
