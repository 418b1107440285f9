#!/usr/bin/env bash
# The services harness under the conditions that broke it (issue #26): a
# `setsid` that forks (as it does when the caller leads a process group,
# which left MinIO running, its PID file naming a process long gone, and
# the start judged failed), and a loaded machine. Each round starts MinIO,
# checks that the PID file names the process that answers, stops it by
# that PID and checks that nothing is left running. Run by
# `make integration-test` before the suite (about 20 s).
#
#   localstack/test-services.sh [ROUNDS]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
services=./localstack/services.sh
rounds=${1:-5}
run=${SHOPLAKE_RUN_DIR:-${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}/run}
log() { echo "[services-test] $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

shim=$(mktemp -d)
busy=()
cleanup() {
  for p in "${busy[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$shim"
}
trap cleanup EXIT
printf '#!/bin/sh\nexec %s -f "$@"\n' "$(command -v setsid)" > "$shim/setsid"
chmod +x "$shim/setsid"

if "$services" status minio | grep -q running; then
  log "MinIO already runs (started by this script's caller): nothing to test on it"
  exit 0
fi
"$services" install minio >/dev/null 2>&1
# The machine loaded: a busy loop per core.
for _ in $(seq "$(nproc)"); do (while :; do :; done) & busy+=($!); done

for round in $(seq "$rounds"); do
  setsid_path=$PATH
  (( round % 2 )) && setsid_path="$shim:$PATH"   # every other round, the forking setsid
  PATH=$setsid_path "$services" start minio >/dev/null 2>&1 || fail "round $round: start failed: $(tail -n 5 "$run/minio.log")"
  pid=$(cat "$run/minio.pid")
  grep -qa "bin/minio" "/proc/$pid/cmdline" || fail "round $round: the PID file names $pid, not MinIO"
  "$services" status minio | grep -q running || fail "round $round: status does not say running"
  "$services" stop minio >/dev/null 2>&1
  if pgrep -f "${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}/bin/minio server" >/dev/null || kill -0 "$pid" 2>/dev/null; then
    fail "round $round: MinIO left running after stop"
  fi
  log "ok: round $round ($( (( round % 2 )) && echo "forking setsid" || echo "setsid" ), $(nproc) busy loops beside it)"
done
log "all $rounds rounds passed"
