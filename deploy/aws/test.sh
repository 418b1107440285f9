#!/usr/bin/env bash
# make security-test: least privilege, encryption at rest and the
# CloudFormation stack, against real servers (deploy/aws/README.md).
#
#   deploy/aws/test.sh              run the tier (pytest, deploy/aws/tests/)
#   deploy/aws/test.sh --install    only install what it needs (.ci/run, during the Rust build)
#   deploy/aws/test.sh -k stack     extra arguments go to pytest
#
# It starts its own two servers, on free ports of 127.0.0.1, and stops them
# (by PID) when it exits, so the other tiers' services are left alone:
#   - MinIO (the binary localstack/services.sh builds) with its built-in KMS,
#     a static key made for this run (MINIO_KMS_SECRET_KEY=<name>:<base64 of
#     32 random bytes>), a random root password and MINIO_SITE_REGION;
#   - LocalStack 4.12 (localstack/services.sh's venv) with S3, KMS, IAM, STS
#     and CloudFormation, and localstack-py311/sitecustomize.py on its path
#     (its KMS needs Python 3.12's uuid5 to create a key).
# Their data lives in a scratch directory, removed afterwards unless a test
# failed or KEEP_TMP=1.
#
# Installs, cached outside the clone: the Python test venv
# ($SHOPLAKE_CACHE/security-venv, deploy/aws/tests/requirements.txt) and the
# servers (`localstack/services.sh install all`).
#
# Environment: SHOPLAKE_BIN (default $CARGO_TARGET_DIR or
# $SHOPLAKE_CACHE/target, debug/shoplake; waited for up to
# SHOPLAKE_BIN_WAIT_SECS while a build replaces it, then copied),
# SHOPLAKE_CACHE (default ~/.cache/shoplake), KEEP_TMP=1.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}"
venv="$cache/security-venv"
requirements="$here/tests/requirements.txt"
bin="${SHOPLAKE_BIN:-${CARGO_TARGET_DIR:-$cache/target}/debug/shoplake}"
bin_wait="${SHOPLAKE_BIN_WAIT_SECS:-900}"
started=$SECONDS

TIER=security-test
# shellcheck source=tools/tier.sh
source "$repo/tools/tier.sh"

# --- installs ------------------------------------------------------------------
mkdir -p "$cache"
(
  exec 9>"$cache/security-venv.lock"
  flock 9 # two runs never build the venv at the same time
  tier_install_venv "$venv" "$requirements"
)
# MinIO's Go build and LocalStack's venv (each a no-op when cached; locked).
"$repo/localstack/services.sh" install all
if [[ ${1:-} == --install ]]; then exit 0; fi

minio_bin="$cache/bin/minio"
localstack_py="$cache/localstack-venv/bin/python"
[[ -x $minio_bin && -x $localstack_py ]] || die "localstack/services.sh did not install MinIO and LocalStack"

# --- the binary: wait while a build replaces it, then test a private copy -------
tier_wait_for_binary "$bin" "$bin_wait"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/shoplake-security.XXXXXX")"
pids=()
rc=1
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  tier_stop_groups "${pids[@]}"
  if [[ $rc -eq 0 && -z ${KEEP_TMP:-} ]]; then
    rm -rf "$tmp"
  else
    log "work directory kept: $tmp (server logs, shoplake-runs.log)"
  fi
}
trap cleanup EXIT
mkdir -p "$tmp/bin" "$tmp/work"
cp "$bin" "$tmp/bin/shoplake"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME HEALTH_URL COMMAND...: COMMAND in its own session, logging to
# $tmp/NAME.log; waits until HEALTH_URL answers 2xx (120 s at most).
start() {
  local name="$1" url="$2" pid t0=$SECONDS
  shift 2
  # The server writes its own PID from inside its session (setsid forks
  # when its caller leads a process group, so $! may be a parent gone at
  # once: the server would be judged dead while it runs, and left running).
  # shellcheck disable=SC2016 # $$, $0 and $@ are the new shell's
  setsid bash -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$tmp/$name.pid" "$@" \
    >"$tmp/$name.log" 2>&1 </dev/null &
  until [ -s "$tmp/$name.pid" ]; do
    ((SECONDS - t0 < 30)) || die "$name did not start (no PID after 30s)"
    sleep 0.1
  done
  pid=$(cat "$tmp/$name.pid")
  pids+=("$pid")
  until curl -fsS --noproxy '*' --max-time 2 -o /dev/null "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$tmp/$name.log" >&2
      die "$name exited during startup (log above)"
    fi
    ((SECONDS - t0 < 120)) || {
      tail -n 30 "$tmp/$name.log" >&2
      die "$name not healthy at $url after 120s"
    }
    sleep 0.5
  done
  log "$name up after $((SECONDS - t0))s (pid $pid, $url)"
}

minio_port="$(free_port)"
minio_key_name=shoplake-security-test
minio_root_password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
start minio "http://127.0.0.1:$minio_port/minio/health/ready" \
  env MINIO_ROOT_USER=security-root MINIO_ROOT_PASSWORD="$minio_root_password" \
  MINIO_KMS_SECRET_KEY="$minio_key_name:$(head -c 32 /dev/urandom | base64)" \
  MINIO_SITE_REGION=us-east-1 MINIO_UPDATE=off MINIO_BROWSER=off \
  "$minio_bin" server "$tmp/minio-data" --address "127.0.0.1:$minio_port"

localstack_port="$(free_port)"
fs="$tmp/localstack"
mkdir -p "$fs"
# As localstack/services.sh starts it (see there), plus KMS, IAM and
# CloudFormation, and the uuid5 backport on PYTHONPATH.
start localstack "http://127.0.0.1:$localstack_port/_localstack/health" \
  env -C "$fs" PATH="$(dirname "$localstack_py"):$PATH" PYTHONPATH="$here/localstack-py311" \
  OVERRIDE_IN_DOCKER=0 GATEWAY_LISTEN="127.0.0.1:$localstack_port" GATEWAY_SERVER=hypercorn \
  SERVICES=s3,sts,kms,iam,cloudformation DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
  PERSISTENCE=0 FILESYSTEM_ROOT="$fs" LOCALSTACK_VOLUME_DIR="$fs/var/lib/localstack" \
  "$localstack_py" -m localstack.runtime.main

log "servers ready at $((SECONDS - started))s"
export SHOPLAKE_BIN="$tmp/bin/shoplake"
export SECTEST_WORKDIR="$tmp/work"
export SECTEST_MINIO_ENDPOINT="http://127.0.0.1:$minio_port"
export SECTEST_MINIO_ROOT_USER=security-root SECTEST_MINIO_ROOT_PASSWORD="$minio_root_password"
export SECTEST_MINIO_KMS_KEY="$minio_key_name"
export SECTEST_LOCALSTACK_ENDPOINT="http://127.0.0.1:$localstack_port"
export SECTEST_LOCALSTACK_LOG="$tmp/localstack.log" # its request log (STS calls)
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the clone
set +e
"$venv/bin/python" -m pytest -c "$here/tests/pytest.ini" --rootdir "$here/tests" "$here/tests" "$@"
rc=$?
set -e
log "time: $((SECONDS - started))s"
exit "$rc"
