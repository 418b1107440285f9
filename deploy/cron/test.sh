#!/usr/bin/env bash
# Tests deploy/cron/shoplake-cron.sh and shoplake.crontab for real with the built shoplake binary,
# in a temporary directory (exports, table, log, lock file, config file).
#
#   deploy/cron/test.sh            (make cron-test)
#
# SHOPLAKE_BIN: binary to test (default ~/.cache/shoplake/target/debug/shoplake), waited for up to
# SHOPLAKE_BIN_WAIT_SECS (default 900) while a build replaces it. KEEP_TMP=1 keeps the temp dir.
set -Eeuo pipefail
# Any unexpected failing command ends the test loudly, not silently through set -e.
trap 'echo "[cron-test] FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}
SHOPLAKE_BIN=${SHOPLAKE_BIN:-$CACHE/target/debug/shoplake}
BIN_WAIT_SECS=${SHOPLAKE_BIN_WAIT_SECS:-900}
WRAPPER=$HERE/shoplake-cron.sh
START=$SECONDS

log() { echo "[cron-test] $*"; }
ok() { echo "[cron-test] ok: $*"; }
fail() {
  echo "[cron-test] FAIL: $*" >&2
  [ -z "${LOG:-}" ] || [ ! -f "$LOG" ] || tail -20 "$LOG" | sed 's/^/    | /' >&2
  exit 1
}

# --- the crontab --------------------------------------------------------------------------------
CRONTAB=$HERE/shoplake.crontab
jobs=$(grep -Ev '^[[:space:]]*(#|$|[A-Z_]+=)' "$CRONTAB")
[ "$(wc -l <<<"$jobs")" = 1 ] || fail "shoplake.crontab must have exactly one active job, has: $jobs"
read -r m h dom mon dow cmd <<<"$jobs"
[ "$m $h $dom $mon $dow" = "0 3 * * *" ] || fail "crontab schedule is '$m $h $dom $mon $dow', not 0 3 * * *"
[[ $cmd == */shoplake-cron.sh ]] || fail "crontab job does not run shoplake-cron.sh: $cmd"
grep -qx 'CRON_TZ=UTC' "$CRONTAB" || fail "crontab does not set CRON_TZ=UTC"
ok "shoplake.crontab: '0 3 * * *' with CRON_TZ=UTC runs $cmd"

# --- the binary: wait while a build replaces it, then test a private copy -----------------------
waited=0
until [ -x "$SHOPLAKE_BIN" ]; do
  ((waited < BIN_WAIT_SECS)) || fail "no shoplake binary at $SHOPLAKE_BIN after ${BIN_WAIT_SECS}s"
  ((waited % 60)) || log "waiting for $SHOPLAKE_BIN (being built?)"
  sleep 5
  waited=$((waited + 5))
done

TMP=$(mktemp -d -t shoplake-cron-test.XXXXXX)
HOLDER=
cleanup() {
  [ -z "$HOLDER" ] || kill "$HOLDER" 2>/dev/null || true
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
mkdir -p "$TMP/bin"
cp "$SHOPLAKE_BIN" "$TMP/bin/shoplake"
BIN=$TMP/bin/shoplake
SOURCE=$TMP/raw
TABLE=$TMP/lake/shopify_configuration
LOG=$TMP/log/ingest.log
LOCK=$TMP/ingest.lock
unset SHOPLAKE_SOURCE SHOPLAKE_TABLE SHOPLAKE_LOG SHOPLAKE_LOCK SHOPLAKE_BIN SHOPLAKE_INGEST_ARGS AWS_ENDPOINT_URL

# The wrapper gets everything from its config file, as under cron.
cat >"$TMP/env" <<EOF
SHOPLAKE_BIN=$BIN
SHOPLAKE_SOURCE=$SOURCE
SHOPLAKE_TABLE=$TABLE
SHOPLAKE_LOG=$LOG
SHOPLAKE_LOCK=$LOCK
RUST_LOG=warn
EOF
export SHOPLAKE_CRON_ENV=$TMP/env

TODAY=$(date -u +%F)
YESTERDAY=$(date -u -d 'today - 1 day' +%F)
# Exports for the day before yesterday, yesterday and today (a wrong default date would load one
# of the others), and for 2019-04-01 / 2019-04-02; none for 2019-04-20.
"$BIN" generate --from "$(date -u -d 'today - 2 days' +%F)" --to "$TODAY" --rows 200 --out "$SOURCE" >/dev/null
"$BIN" generate --from 2019-04-01 --to 2019-04-02 --rows 200 --out "$SOURCE" >/dev/null

history() { "$BIN" history --table "$TABLE" --format json; }
query_n() {
  "$BIN" query --table "$TABLE" --format json --sql "SELECT count(*) AS n FROM shopify_configuration $1" |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); r=d[0] if isinstance(d,list) else d; print(r["n"])'
}
count_date() { query_n "WHERE export_date = '$1'"; }
# run_wrapper [ARGS...]: sets RC
run_wrapper() {
  RC=0
  "$WRAPPER" "$@" 2>"$TMP/stderr" || RC=$?
}
# last_report DATE: the last JSON report logged for DATE
last_report() { { grep -F "[$1] {" "$LOG" || true; } | tail -1 | sed 's/^[^ ]* \[[^]]*\] //'; }
jfield() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# --- 1. default date: yesterday (UTC) -------------------------------------------------------------
log "1. shoplake-cron.sh (no argument) -> loads yesterday UTC ($YESTERDAY)"
run_wrapper
[ "$RC" = 0 ] || fail "1. exit $RC: $(cat "$TMP/stderr")"
[ ! -s "$TMP/stderr" ] || fail "1. a successful run wrote to stderr (cron would mail it): $(cat "$TMP/stderr")"
REPORT=$(last_report "$YESTERDAY")
[ -n "$REPORT" ] || fail "1. no JSON report for $YESTERDAY in $LOG"
[ "$(jfield "$REPORT" status)" = committed ] || fail "1. report status is not committed"
N=$(count_date "$YESTERDAY")
{ [ "$N" -gt 0 ] && [ "$N" = "$(jfield "$REPORT" rows_valid)" ]; } || fail "1. $N rows for $YESTERDAY in the table"
[ "$(query_n "")" = "$N" ] || fail "1. dates other than $YESTERDAY were loaded"
grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z \[$YESTERDAY\] shoplake-cron: end: exit 0 after" "$LOG" ||
  fail "1. no timestamped end line in the log"
ok "1. exit 0, $N rows for $YESTERDAY (only that date), report in the log:"
sed 's/^/    | /' "$LOG"

# --- 2. a given date, then the same again: no new version -----------------------------------------
log "2. shoplake-cron.sh 2019-04-01 (twice)"
run_wrapper 2019-04-01
[ "$RC" = 0 ] || fail "2. exit $RC"
N1=$(count_date 2019-04-01)
[ "$N1" -gt 0 ] || fail "2. 2019-04-01 not loaded"
HIST=$(history)
run_wrapper 2019-04-01
[ "$RC" = 0 ] || fail "2. re-run exit $RC"
[ "$(jfield "$(last_report 2019-04-01)" status)" = unchanged ] || fail "2. re-run status is not unchanged"
[ "$(history)" = "$HIST" ] || fail "2. re-run added a table version"
[ "$(count_date 2019-04-01)" = "$N1" ] || fail "2. re-run changed the rows"
ok "2. 2019-04-01 loaded ($N1 rows); the re-run is 'unchanged' and adds no version"

# --- 3. export missing: exit 3 --------------------------------------------------------------------
log "3. shoplake-cron.sh 2019-04-20 (no export)"
run_wrapper 2019-04-20
[ "$RC" = 3 ] || fail "3. exit $RC, expected 3"
grep -q 'exit 3' "$TMP/stderr" || fail "3. no failure summary on stderr"
grep -Fq "[2019-04-20] shoplake-cron: end: exit 3" "$LOG" || fail "3. exit 3 not logged"
[ "$(history)" = "$HIST" ] || fail "3. table changed"
ok "3. exit 3, stderr: $(cat "$TMP/stderr")"

# --- 4. another run holds the lock: exit 75, nothing loaded ---------------------------------------
log "4. shoplake-cron.sh 2019-04-02 while another process holds $LOCK"
(
  exec 9>>"$LOCK"
  flock 9
  exec sleep 60
) &
HOLDER=$!
for _ in $(seq 100); do
  flock -n "$LOCK" true || break
  sleep 0.1
done
! flock -n "$LOCK" true || fail "4. the lock holder did not take the lock"
run_wrapper 2019-04-02
[ "$RC" = 75 ] || fail "4. exit $RC while the lock was held, expected 75"
[ "$(history)" = "$HIST" ] || fail "4. the table changed while the lock was held"
[ "$(count_date 2019-04-02)" = 0 ] || fail "4. 2019-04-02 was loaded while the lock was held"
grep -Fq "[2019-04-02] shoplake-cron: another run holds $LOCK; not loading 2019-04-02 (exit 75)" "$LOG" ||
  fail "4. the skipped run is not logged"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null || true
HOLDER=
run_wrapper 2019-04-02
[ "$RC" = 0 ] || fail "4. exit $RC once the lock was free"
[ "$(count_date 2019-04-02)" -gt 0 ] || fail "4. 2019-04-02 not loaded once the lock was free"
ok "4. exit 75 and no new version while locked; the same date loads once the lock is released"

# --- 5. configuration errors: exit 2 --------------------------------------------------------------
HIST=$(history)
run_wrapper 2019-02-30
[ "$RC" = 2 ] || fail "5. a bad date argument gave exit $RC, expected 2"
SHOPLAKE_CRON_ENV=$TMP/missing-env run_wrapper 2019-04-01
[ "$RC" = 2 ] || fail "5. a missing config file gave exit $RC, expected 2"
printf 'SHOPLAKE_BIN=%s\n' "$TMP/nonexistent" >>"$TMP/env"
run_wrapper 2019-04-01
[ "$RC" = 2 ] || fail "5. a missing binary gave exit $RC, expected 2"
[ "$(history)" = "$HIST" ] || fail "5. the table changed"
ok "5. bad date argument, missing config file, missing binary: exit 2, table unchanged"

log "all cron checks passed in $((SECONDS - START))s"
