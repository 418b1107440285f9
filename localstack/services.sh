#!/usr/bin/env bash
# Installs, starts and stops the two S3 servers shoplake's integration tests use, as host
# processes on 127.0.0.1 (no Docker): LocalStack (:4566) and MinIO (:9000, console :9001).
#
#   localstack/services.sh install|start|wait|stop|status [localstack|minio|all]   (default: all)
#   eval "$(localstack/services.sh env)"     # exports SHOPLAKE_IT_* for the tests
#
# All state lives outside the git clone: ${SHOPLAKE_CACHE:-$HOME/.cache/shoplake} (venv, minio
# binary, data); PID files and logs in ${SHOPLAKE_RUN_DIR:-$SHOPLAKE_CACHE/run}.
# `start` installs if needed, launches, waits until healthy and creates buckets raw + lake;
# a MinIO it launches starts with no data (what earlier runs left is deleted).
# `wait` only waits for health and (re)creates the buckets. Every subcommand is idempotent.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}
RUN=${SHOPLAKE_RUN_DIR:-$CACHE/run}
VENV=$CACHE/localstack-venv
PY=$VENV/bin/python
BIN=$CACHE/bin
WAIT_SECS=${SHOPLAKE_WAIT_SECS:-120}
BUCKET_SCRIPT=$HERE/init/ready.d/10-create-buckets.sh

LOCALSTACK_VERSION=4.12.0
# boto3 + awscli come with the [runtime] extra; the other pins keep 4.12.0 importable
# (localstack-twisted 26.4.0 imports service_identity without declaring it).
LOCALSTACK_PIP=("localstack-core[runtime]==$LOCALSTACK_VERSION" "localstack-twisted==25.5.0"
  "cryptography<44" "pyopenssl<24.3" "cbor2<5.7")
LS_URL=http://127.0.0.1:4566
# MinIO has no semver tags; this is the Go proxy's @latest pseudo-version (2026-02-12) pinned.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_URL=http://127.0.0.1:9000
MINIO_ROOT_USER=${MINIO_ROOT_USER:-shoplake}
MINIO_ROOT_PASSWORD=${MINIO_ROOT_PASSWORD:-shoplake-minio-secret-5b1e}

log() { echo "[services] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# pid_of NAME: print the PID from NAME's PID file if that process is alive and really is NAME.
pid_of() {
  local f=$RUN/$1.pid pid
  pid=$(cat "$f" 2>/dev/null) && kill -0 "$pid" 2>/dev/null && grep -qa "$1" "/proc/$pid/cmdline" && echo "$pid"
}

install_localstack() {
  local marker=$VENV/.shoplake-installed
  if [ "$(cat "$marker" 2>/dev/null)" = "${LOCALSTACK_PIP[*]}" ]; then
    log "localstack $LOCALSTACK_VERSION already installed in $VENV"; return
  fi
  local py311=${SHOPLAKE_PYTHON311:-python3.11}
  command -v "$py311" >/dev/null || die "python3.11 not found (set SHOPLAKE_PYTHON311)"
  log "installing localstack $LOCALSTACK_VERSION into $VENV"
  [ -x "$PY" ] || "$py311" -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q "${LOCALSTACK_PIP[@]}"
  echo "${LOCALSTACK_PIP[*]}" > "$marker"
}

install_minio() {
  if [ -x "$BIN/minio" ] && [ "$(cat "$BIN/.minio-version" 2>/dev/null)" = "$MINIO_VERSION" ]; then
    log "minio $MINIO_VERSION already built at $BIN/minio"; return
  fi
  command -v go >/dev/null || die "go toolchain not found"
  log "building minio $MINIO_VERSION into $BIN (nice, -p=1; this takes a while)"
  mkdir -p "$BIN"
  (cd "$CACHE" && GOBIN=$BIN GOFLAGS=-p=1 nice -n 19 go install "github.com/minio/minio@$MINIO_VERSION")
  echo "$MINIO_VERSION" > "$BIN/.minio-version"
}

# launch NAME URL CMD...: start CMD in its own session/process group, logging to $RUN/NAME.log,
# unless it is already running; refuse if something else already answers at URL.
launch() {
  local name=$1 url=$2; shift 2
  if pid_of "$name" >/dev/null; then log "$name already running (pid $(pid_of "$name"))"; return; fi
  if curl -s --noproxy '*' --max-time 2 -o /dev/null "$url"; then
    die "something not started by this script already answers at $url; stop it, or use 'wait'"
  fi
  log "starting $name (log: $RUN/$name.log)"
  [ ! -f "$RUN/$name.log" ] || mv -f "$RUN/$name.log" "$RUN/$name.log.1"
  rm -f "$RUN/$name.pid"
  # The service writes its own PID, from inside its new session, then
  # becomes the command: setsid forks when it is a process group leader, so
  # the PID of the background job ($!) may be a parent that is gone while
  # the service runs (it was then judged dead at startup, and left running).
  # shellcheck disable=SC2016 # $$, $0 and $@ are the new shell's
  setsid bash -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$RUN/$name.pid" "$@" \
    >>"$RUN/$name.log" 2>&1 </dev/null 9>&- &
  local waited=0
  until [ -s "$RUN/$name.pid" ]; do
    (( waited++ < 300 )) || die "$name did not start (no PID after 30s; log: $RUN/$name.log)"
    sleep 0.1
  done
}

start_localstack() {
  install_localstack
  local fs=$CACHE/localstack-data
  mkdir -p "$fs/etc/localstack" "$RUN"
  # Host mode reads init hooks from $FILESYSTEM_ROOT/etc/localstack/init: point it at ours.
  ln -sfn "$HERE/init" "$fs/etc/localstack/init"
  # OVERRIDE_IN_DOCKER=0: this machine has /.dockerenv, which makes LocalStack use /etc/localstack,
  # /var/lib/localstack and /tmp/localstack instead of $FILESYSTEM_ROOT.
  # S3 + STS only; hypercorn because the default twisted server ignores the host in GATEWAY_LISTEN
  # and binds 0.0.0.0. No DNS server (default 0.0.0.0:53), no telemetry, no cert download.
  launch localstack "$LS_URL" env -C "$fs" PATH="$VENV/bin:$PATH" \
    OVERRIDE_IN_DOCKER=0 GATEWAY_LISTEN=127.0.0.1:4566 GATEWAY_SERVER=hypercorn SERVICES=s3,sts DNS_ADDRESS=0 \
    DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 PERSISTENCE=0 \
    FILESYSTEM_ROOT="$fs" LOCALSTACK_VOLUME_DIR="$fs/var/lib/localstack" \
    "$PY" -m localstack.runtime.main
}

start_minio() {
  install_minio
  # Its data is test state, kept across runs it grew to 48 GB, until MinIO
  # refused every write ("minimum free drive threshold"): a MinIO that is
  # started starts empty (the buckets are made again by `wait`).
  if ! pid_of minio >/dev/null && [ -d "$CACHE/minio-data" ]; then
    log "emptying $CACHE/minio-data ($(du -sh "$CACHE/minio-data" | cut -f1))"
    rm -rf "$CACHE/minio-data"
  fi
  mkdir -p "$CACHE/minio-data" "$RUN"
  # A site region, as AWS has: requests signed for another region are refused.
  launch minio "$MINIO_URL" env MINIO_ROOT_USER="$MINIO_ROOT_USER" MINIO_ROOT_PASSWORD="$MINIO_ROOT_PASSWORD" \
    MINIO_SITE_REGION=us-east-1 \
    MINIO_UPDATE=off MINIO_BROWSER=on \
    "$BIN/minio" server "$CACHE/minio-data" --address 127.0.0.1:9000 --console-address 127.0.0.1:9001
}

# wait_http NAME URL [GREP_REGEX]: poll URL until it answers 2xx (and matches the regex).
wait_http() {
  local name=$1 url=$2 re=${3:-} start=$SECONDS body
  while :; do
    if body=$(curl -fsS --noproxy '*' --max-time 2 "$url" 2>/dev/null) && { [ -z "$re" ] || grep -Eq "$re" <<<"$body"; }; then
      log "$name healthy after $((SECONDS - start))s"; return
    fi
    # Dead only if its own PID is gone (its command line may read empty for
    # a moment while it execs, so it is not looked at here).
    if [ -f "$RUN/$name.pid" ] && ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      tail -n 30 "$RUN/$name.log" >&2 || true; die "$name exited during startup (log above)"
    fi
    if (( SECONDS - start >= WAIT_SECS )); then
      tail -n 30 "$RUN/$name.log" >&2 || true; die "$name not healthy at $url after ${WAIT_SECS}s (log tail above)"
    fi
    sleep 1
  done
}

wait_localstack() {
  wait_http localstack "$LS_URL/_localstack/health" '"s3": *"(available|running)"'
  SHOPLAKE_PYTHON=$PY AWS_ENDPOINT_URL=$LS_URL AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    bash "$BUCKET_SCRIPT"
}

wait_minio() {
  wait_http minio "$MINIO_URL/minio/health/ready"
  SHOPLAKE_PYTHON=$PY AWS_ENDPOINT_URL=$MINIO_URL \
    AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD bash "$BUCKET_SCRIPT"
}

# stop NAME: SIGTERM the process group, wait up to 20 s, then SIGKILL.
stop() {
  local name=$1 pid
  if ! pid=$(pid_of "$name"); then log "$name not running"; rm -f "$RUN/$name.pid"; return; fi
  log "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 -- "-$pid" 2>/dev/null; then
    log "$name did not exit after 20s; sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

status() {
  local name=$1 pid
  if pid=$(pid_of "$name"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
}

print_env() {
  local kv
  for kv in SHOPLAKE_IT_REGION=us-east-1 \
    SHOPLAKE_IT_LOCALSTACK_ENDPOINT=$LS_URL SHOPLAKE_IT_LOCALSTACK_ACCESS_KEY=test \
    SHOPLAKE_IT_LOCALSTACK_SECRET_KEY=shoplake-localstack-secret-3c9a SHOPLAKE_IT_MINIO_ENDPOINT=$MINIO_URL \
    "SHOPLAKE_IT_MINIO_ACCESS_KEY=$MINIO_ROOT_USER" "SHOPLAKE_IT_MINIO_SECRET_KEY=$MINIO_ROOT_PASSWORD"; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
}

cmd=${1:-}; target=${2:-all}
case "$target" in
  localstack|minio) svcs=("$target") ;;
  all) svcs=(localstack minio) ;;
  *) die "unknown service '$target' (localstack|minio|all)" ;;
esac
mkdir -p "$CACHE" "$RUN"
# Installs (a pip install, a Go build) may run from CI in the background while
# the tests are built: a lock makes a second install wait for the first.
lock_installs() { exec 9>"$CACHE/install.lock"; flock 9; }
case "$cmd" in
  install) lock_installs; for s in "${svcs[@]}"; do "install_$s"; done ;;
  start)   lock_installs; for s in "${svcs[@]}"; do "start_$s"; done   # launch all, then wait for each
           for s in "${svcs[@]}"; do "wait_$s"; done ;;
  wait)    for s in "${svcs[@]}"; do "wait_$s"; done ;;
  stop)    for s in "${svcs[@]}"; do stop "$s"; done ;;
  status)  for s in "${svcs[@]}"; do status "$s"; done ;;
  env)     print_env ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
