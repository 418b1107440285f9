#!/usr/bin/env bash
# Tests deploy/cron/shoplake-cron.sh and shoplake.crontab for real with the built shoplake binary,
# in a temporary directory (exports, lake, logs, lock files, config file): 1-5 the default table
# (shopify_configuration, as before SHOPLAKE_TABLE_NAME existed), 6 another table
# (SHOPLAKE_TABLE_NAME=shopify_usage_daily: its own log and lock), 7 every table
# (SHOPLAKE_TABLE_NAME=all: --all-tables, every table's lock), 8 table-name configuration errors.
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
# The commented examples for other tables name a table the binary defines, or all (checked below).
EXAMPLE_TABLES=$(grep -Eo '^# [0-9].* SHOPLAKE_TABLE_NAME=[a-z0-9_]+ [^ ]*/shoplake-cron\.sh$' "$CRONTAB" |
  grep -Eo 'SHOPLAKE_TABLE_NAME=[a-z0-9_]+' | cut -d= -f2 | tr '\n' ' ')
[ "$EXAMPLE_TABLES" = "shopify_usage_daily all " ] || fail "crontab examples name '$EXAMPLE_TABLES'"

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
LAKE=$TMP/lake
TABLE=$LAKE/shopify_configuration
USAGE_TABLE=$LAKE/shopify_usage_daily
LOG=$TMP/log/ingest-shopify_configuration.log # SHOPLAKE_LOG=$TMP/log/ingest-{table}.log
LOCK=$TMP/ingest-shopify_configuration.lock    # SHOPLAKE_LOCK=$TMP/ingest-{table}.lock
USAGE_LOG=$TMP/log/ingest-shopify_usage_daily.log
USAGE_LOCK=$TMP/ingest-shopify_usage_daily.lock
ALL_LOG=$TMP/log/ingest-all.log
unset SHOPLAKE_SOURCE SHOPLAKE_TABLE SHOPLAKE_LOG SHOPLAKE_LOCK SHOPLAKE_BIN SHOPLAKE_INGEST_ARGS AWS_ENDPOINT_URL \
  SHOPLAKE_LAKE SHOPLAKE_TABLE_NAME SHOPLAKE_TABLES SHOPLAKE_REJECTS_TABLE
cd "$TMP" # as under cron: no ./tables here, shoplake uses its built-in table definitions

# The wrapper gets everything from its config file, as under cron.
cat >"$TMP/env" <<EOF
SHOPLAKE_BIN=$BIN
SHOPLAKE_SOURCE=$SOURCE
SHOPLAKE_TABLE=$TABLE
SHOPLAKE_LAKE=$LAKE
SHOPLAKE_LOG=$TMP/log/ingest-{table}.log
SHOPLAKE_LOCK=$TMP/ingest-{table}.lock
RUST_LOG=warn
EOF
export SHOPLAKE_CRON_ENV=$TMP/env

TODAY=$(date -u +%F)
YESTERDAY=$(date -u -d 'today - 1 day' +%F)
# Exports for the day before yesterday, yesterday and today (a wrong default date would load one
# of the others), and for 2019-04-01 / 2019-04-02; none for 2019-04-20.
"$BIN" generate --all-tables --from "$(date -u -d 'today - 2 days' +%F)" --to "$TODAY" --rows 200 --out "$SOURCE" >/dev/null
"$BIN" generate --all-tables --from 2019-04-01 --to 2019-04-02 --rows 200 --out "$SOURCE" >/dev/null

history() { "$BIN" history --table "$TABLE" --format json; }
query_n() { # query_n SQL_TAIL [TABLE_NAME]: count(*) of the table (default shopify_configuration)
  local name=${2:-shopify_configuration}
  "$BIN" query --table-name "$name" --table "$LAKE/$name" --format json --sql "SELECT count(*) AS n FROM $name $1" |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); r=d[0] if isinstance(d,list) else d; print(r["n"])'
}
count_date() { query_n "WHERE export_date = '$1'"; }
count_usage() { query_n "WHERE usage_date = '$1'" shopify_usage_daily; }
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
[ ! -e "$USAGE_TABLE" ] || fail "1. the default run loaded shopify_usage_daily too"
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

# --- 6. another table: SHOPLAKE_TABLE_NAME=shopify_usage_daily, its own log and lock -------------
sed -i "s#^SHOPLAKE_BIN=.*#SHOPLAKE_BIN=$BIN#" "$TMP/env" # undo 5.'s missing binary
log "6. SHOPLAKE_TABLE_NAME=shopify_usage_daily shoplake-cron.sh 2019-04-01, while shopify_configuration's lock is held"
hold_lock() { # hold_lock FILE: a background process holds FILE's lock until killed ($HOLDER)
  (
    exec 9>>"$1"
    flock 9
    exec sleep 60
  ) &
  HOLDER=$!
  for _ in $(seq 100); do
    flock -n "$1" true || return 0
    sleep 0.1
  done
  fail "the lock holder did not take $1"
}
release_lock() {
  kill "$HOLDER"
  wait "$HOLDER" 2>/dev/null || true
  HOLDER=
}
HIST=$(history)
hold_lock "$LOCK" # another table's run may go on: locks are per table
echo "SHOPLAKE_TABLE_NAME=all" >>"$TMP/env" # the crontab line's name wins over the config file's
SHOPLAKE_TABLE_NAME=shopify_usage_daily run_wrapper 2019-04-01
release_lock
[ "$RC" = 0 ] || fail "6. exit $RC: $(cat "$TMP/stderr")"
REPORT=$({ grep -F "[2019-04-01] {" "$USAGE_LOG" || true; } | tail -1 | sed 's/^[^ ]* \[[^]]*\] //')
[ "$(jfield "$REPORT" table_name)" = shopify_usage_daily ] || fail "6. no shopify_usage_daily report in $USAGE_LOG"
[ "$(jfield "$REPORT" status)" = committed ] || fail "6. report status is not committed"
N6=$(count_usage 2019-04-01)
{ [ "$N6" -gt 0 ] && [ "$N6" = "$(jfield "$REPORT" rows_valid)" ]; } || fail "6. $N6 rows for 2019-04-01 in $USAGE_TABLE"
[ "$(history)" = "$HIST" ] || fail "6. shopify_configuration changed"
grep -Fq "[2019-04-01] shoplake-cron: start: $BIN ingest --date 2019-04-01 --table-name shopify_usage_daily" "$USAGE_LOG" ||
  fail "6. the start line is not in $USAGE_LOG"
! grep -Fq "shopify_usage_daily" "$LOG" || fail "6. the usage run wrote to shopify_configuration's log"
[ ! -e "$ALL_LOG" ] || fail "6. the config file's SHOPLAKE_TABLE_NAME=all won over the crontab line's"
hold_lock "$USAGE_LOCK"
SHOPLAKE_TABLE_NAME=shopify_usage_daily run_wrapper 2019-04-02
release_lock
[ "$RC" = 75 ] || fail "6. exit $RC while shopify_usage_daily's lock was held, expected 75"
[ "$(count_usage 2019-04-02)" = 0 ] || fail "6. 2019-04-02 was loaded while the lock was held"
ok "6. shopify_usage_daily: $N6 rows into $USAGE_TABLE, logged to its own log, not blocked by shopify_configuration's lock; exit 75 under its own"

# --- 7. every table: SHOPLAKE_TABLE_NAME=all -> --all-tables, every table's lock ---------------
log "7. SHOPLAKE_TABLE_NAME=all shoplake-cron.sh 2019-04-02"
N2=$(count_date 2019-04-02) # loaded in 4.
hold_lock "$USAGE_LOCK"
SHOPLAKE_TABLE_NAME=all run_wrapper 2019-04-02
release_lock
[ "$RC" = 75 ] || fail "7. exit $RC while one table's lock was held, expected 75"
{ [ "$(count_date 2019-04-02)" = "$N2" ] && [ "$(count_usage 2019-04-02)" = 0 ]; } ||
  fail "7. a table changed while one table's lock was held"
SHOPLAKE_TABLE_NAME=all run_wrapper 2019-04-02
[ "$RC" = 0 ] || fail "7. exit $RC: $(cat "$TMP/stderr")"
REPORT=$({ grep -F "[2019-04-02] {" "$ALL_LOG" || true; } | tail -1 | sed 's/^[^ ]* \[[^]]*\] //')
STATUSES=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(" ".join(t["table_name"] + "=" + t["status"] for t in r["tables"]))' "$REPORT")
EXPECTED="shopify_bulk_products=committed shopify_bulk_variants=committed shopify_configuration=unchanged"
EXPECTED="$EXPECTED shopify_customers=committed shopify_products=committed shopify_usage_daily=committed"
[ "$STATUSES" = "$EXPECTED" ] || fail "7. report: $STATUSES"
[ "$(count_usage 2019-04-02)" -gt 0 ] || fail "7. shopify_usage_daily 2019-04-02 not loaded"
grep -Fq -- "ingest --date 2019-04-02 --all-tables" "$ALL_LOG" || fail "7. the start line is not in $ALL_LOG"
ok "7. all: exit 75 while one table's lock was held; then $STATUSES (report in $ALL_LOG)"

# --- 8. table-name configuration errors: exit 2, nothing loaded ----------------------------------
HIST=$(history)
SHOPLAKE_TABLE_NAME=Bad-Name run_wrapper 2019-04-01
[ "$RC" = 2 ] || fail "8. a bad table name gave exit $RC, expected 2"
SHOPLAKE_TABLE_NAME=no_such_table run_wrapper 2019-04-01
[ "$RC" = 2 ] || fail "8. an undefined table gave exit $RC, expected 2"
sed -i "s#^SHOPLAKE_TABLE=.*#SHOPLAKE_TABLE=$TMP/elsewhere#" "$TMP/env"
SHOPLAKE_TABLE_NAME=shopify_usage_daily run_wrapper 2019-04-02
[ "$RC" = 2 ] || fail "8. SHOPLAKE_TABLE naming another place gave exit $RC for shopify_usage_daily, expected 2"
grep -q "SHOPLAKE_TABLE=.* names one table" "$TMP/stderr" || fail "8. no explanation: $(cat "$TMP/stderr")"
sed -i "/^SHOPLAKE_TABLE=/d; /^SHOPLAKE_LAKE=/d" "$TMP/env"
SHOPLAKE_TABLE_NAME=all run_wrapper 2019-04-02
[ "$RC" = 2 ] || fail "8. all without SHOPLAKE_LAKE gave exit $RC, expected 2"
[ "$(history)" = "$HIST" ] || fail "8. the table changed"
[[ $("$BIN" tables --format json) == *'"name":"shopify_usage_daily"'* ]] || fail "crontab example table undefined"
ok "8. bad or undefined table name, SHOPLAKE_TABLE naming another place, all without SHOPLAKE_LAKE: exit 2"

log "all cron checks passed in $((SECONDS - START))s"
