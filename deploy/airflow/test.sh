#!/usr/bin/env bash
# Tests deploy/airflow/dags/ingestion_shopify_configuration.py for real with Airflow 3.3.2 and the
# built shoplake binary (no scheduler, no cluster): `airflow dags test` runs the DAG in-process
# against a temporary sqlite metadata DB, a temporary source directory and a temporary table.
#
#   deploy/airflow/test.sh            (make airflow-test)
#   deploy/airflow/test.sh --install  only install the venv (.ci/run, during the Rust build)
#
# Environment:
#   SHOPLAKE_BIN            binary to test (default $SHOPLAKE_CACHE/target/debug/shoplake); waited
#                           for up to SHOPLAKE_BIN_WAIT_SECS (default 900) while a build replaces it
#   SHOPLAKE_CACHE          cache root (default ~/.cache/shoplake); the venv is $SHOPLAKE_CACHE/airflow-venv,
#                           rebuilt only when requirements.txt or the Python version changes
#   SHOPLAKE_PYTHON311      python used to create the venv (default python3.11)
#   KEEP_TMP=1              keep the temporary directory (printed) for inspection
#
# Checks, in order: venv; DAG unit tests (DagBag import, id, schedule 03:00 UTC, date param
# validation, date resolution, arguments and exit-code mapping of both runners); then five
# `airflow dags test` runs and a back-fill dry run, checked in the table (shoplake query/history) and in
# the metadata DB (task states, try numbers):
#   (a) scheduled-style run, logical date 2019-04-02T03:00Z -> loads 2019-04-01
#   (b) manual run with conf {"date": "2019-04-01"}         -> unchanged, no new table version
#   (c) export missing (exit 3)                             -> up_for_retry, then retried
#   (d) export with a renamed header column (exit 4)        -> failed after one try, alert logged
#   (e) conf {"date": "2019-4-1"}                          -> refused by the Param schema
#   (f) `airflow backfill create --dry-run`                 -> the runs load the intended exports
# Exits non-zero on the first failed check.
set -Eeuo pipefail
# Any unexpected failing command ends the test loudly, not silently through set -e.
trap 'echo "[airflow-test] FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}
VENV=$CACHE/airflow-venv
REQUIREMENTS=$HERE/requirements.txt
PY311=${SHOPLAKE_PYTHON311:-python3.11}
SHOPLAKE_BIN=${SHOPLAKE_BIN:-$CACHE/target/debug/shoplake}
BIN_WAIT_SECS=${SHOPLAKE_BIN_WAIT_SECS:-900}
PIP_VERSION=26.3
DAG_ID=ingestion_shopify_configuration
RETRIES=1 # retries used by this test (production default 6, every 30 min)
START=$SECONDS

log() { echo "[airflow-test] $*"; }
ok() { echo "[airflow-test] ok: $*"; }
fail() {
  echo "[airflow-test] FAIL: $*" >&2
  exit 1
}
timed() { # timed LABEL OUTFILE CMD...: run CMD with its output in OUTFILE, print its wall time
  local label=$1 out=$2 t0=$SECONDS rc=0
  shift 2
  "$@" >"$out" 2>&1 || rc=$?
  log "time: $label $((SECONDS - t0))s"
  return "$rc"
}

# --- the venv (cached outside the clone, rebuilt when its pins change) -----------------------
install_venv() {
  command -v "$PY311" >/dev/null || fail "$PY311 not found (set SHOPLAKE_PYTHON311)"
  local marker=$VENV/.shoplake-requirements want
  want="$("$PY311" --version 2>&1) pip==$PIP_VERSION
$(grep -v '^#' "$REQUIREMENTS")"
  if [ -x "$VENV/bin/airflow" ] && [ "$(cat "$marker" 2>/dev/null)" = "$want" ]; then
    log "venv $VENV up to date"
    return
  fi
  log "installing apache-airflow into $VENV (cold: about a minute)"
  rm -rf "$VENV"
  "$PY311" -m venv "$VENV"
  nice -n 10 "$VENV/bin/pip" install -q "pip==$PIP_VERSION"
  nice -n 10 "$VENV/bin/pip" install -q -r "$REQUIREMENTS"
  printf '%s\n' "$want" >"$marker"
}
mkdir -p "$CACHE"
exec 8>"$CACHE/airflow-venv.lock"
flock 8 # two test runs never build the venv at the same time
t0=$SECONDS
install_venv
log "time: venv $((SECONDS - t0))s"
exec 8>&-
if [ "${1:-}" = --install ]; then exit 0; fi
PY=$VENV/bin/python
AIRFLOW=$VENV/bin/airflow

# --- the binary: wait while a build replaces it, then test a private copy ---------------------
waited=0
until [ -x "$SHOPLAKE_BIN" ]; do
  ((waited < BIN_WAIT_SECS)) || fail "no shoplake binary at $SHOPLAKE_BIN after ${BIN_WAIT_SECS}s"
  ((waited % 60)) || log "waiting for $SHOPLAKE_BIN (being built?)"
  sleep 5
  waited=$((waited + 5))
done

TMP=$(mktemp -d -t shoplake-airflow-test.XXXXXX)
cleanup() {
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
mkdir -p "$TMP/bin"
cp "$SHOPLAKE_BIN" "$TMP/bin/shoplake"
BIN=$TMP/bin/shoplake
SOURCE=$TMP/raw
TABLE=$TMP/lake/shopify_configuration
export RUST_LOG=${RUST_LOG:-warn}
unset SHOPLAKE_SOURCE SHOPLAKE_TABLE AWS_ENDPOINT_URL # the Variable must be what is used

# --- exports: 2019-04-01 and -02 good, 2019-04-03 with application_id renamed, 2019-04-10 none --
"$BIN" generate --from 2019-04-01 --to 2019-04-03 --rows 300 --out "$SOURCE" >/dev/null
sed -i '1s/\bapplication_id\b/application_ident/' "$SOURCE/2019-04-03.csv"
[[ $(head -1 "$SOURCE/2019-04-03.csv") == *application_ident* ]] || fail "could not rename the header column"
[ ! -e "$SOURCE/2019-04-10.csv" ] || fail "2019-04-10 must have no export"

# --- Airflow home, metadata DB, Variables ------------------------------------------------------
export AIRFLOW_HOME=$TMP/airflow-home
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the clone
export AIRFLOW__CORE__DAGS_FOLDER=$HERE/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO
export SHOPLAKE_DAG_RETRIES=$RETRIES SHOPLAKE_DAG_RETRY_DELAY_SECONDS=1
mkdir -p "$AIRFLOW_HOME"
timed "airflow db migrate" "$TMP/db-migrate.log" "$AIRFLOW" db migrate ||
  {
    tail -30 "$TMP/db-migrate.log"
    fail "airflow db migrate"
  }

"$PY" - "$HERE/variables.json" "$TMP/variables.json" "$BIN" "$SOURCE" "$TABLE" <<'EOF'
import json, sys
src, dst, binary, source, table = sys.argv[1:]
variables = json.load(open(src))
cfg = variables["shoplake_ingestion"]
cfg.update(runner="subprocess", binary=binary, source=source, table=table,
           aws_region=None, aws_endpoint_url=None)
json.dump(variables, open(dst, "w"), indent=2)
EOF
"$AIRFLOW" variables import "$TMP/variables.json" >"$TMP/variables.log" 2>&1 ||
  {
    cat "$TMP/variables.log"
    fail "airflow variables import"
  }
# (into a file first: `| grep -q` would SIGPIPE the writer and fail under pipefail)
"$AIRFLOW" variables get shoplake_ingestion >"$TMP/variable.json" 2>/dev/null || fail "airflow variables get"
grep -q "\"table\": \"$TABLE\"" "$TMP/variable.json" ||
  fail "Variable shoplake_ingestion not imported with the test table"
ok "Variables imported from a test copy of variables.json (binary, source and table in $TMP)"

# --- 1. DAG import and unit tests -------------------------------------------------------------
log "DAG import + unit tests (DagBag, schedule, date param, date resolution, both runners)"
timed "unit tests" "$TMP/unit.log" "$PY" -m unittest discover -s "$HERE/tests" -p 'test_*.py' -v ||
  {
    grep -v '^20[0-9][0-9]-' "$TMP/unit.log" | tail -60
    fail "DAG unit tests"
  }
grep -E '^(test_|Ran |OK)' "$TMP/unit.log" | sed 's/^/    /'
"$AIRFLOW" dags list-import-errors -o plain >"$TMP/import-errors.log" 2>&1 || true
if grep -q "ingestion_shopify_configuration.py" "$TMP/import-errors.log"; then
  cat "$TMP/import-errors.log"
  fail "airflow dags list-import-errors reports the DAG file"
fi
ok "no import errors for $DAG_ID"

# --- helpers for the dags test runs ---------------------------------------------------------
history() { "$BIN" history --table "$TABLE" --format json; }
versions() { history | wc -l; }
count_date() {
  "$BIN" query --table "$TABLE" --format json \
    --sql "SELECT count(*) AS n FROM shopify_configuration WHERE export_date = '$1'" |
    "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); r=d[0] if isinstance(d,list) else d; print(r["n"])'
}
# dag_test NAME LOGICAL_DATE [CONF]: airflow dags test, output in $TMP/NAME.log, sets DAG_RC
dag_test() {
  local name=$1 when=$2 conf=${3:-}
  local args=(dags test "$DAG_ID" "$when")
  [ -z "$conf" ] || args+=(--conf "$conf")
  DAG_RC=0
  timed "dags test ($name)" "$TMP/$name.log" "$AIRFLOW" "${args[@]}" || DAG_RC=$?
}
# ti STATE_JSON_PATH...: read the metadata DB for logical date $1 and print the python expression $2
ti() {
  "$PY" "$HERE/tests/ti_state.py" "$DAG_ID" "$1" 2>/dev/null |
    "$PY" -c "import json,sys; s=json.load(sys.stdin); print($2)"
}
# report NAME: the JSON report the task logged
report() {
  { grep -o 'shoplake report: {.*}' "$TMP/$1.log" || true; } | tail -1 | sed 's/^shoplake report: //'
}
jfield() { "$PY" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
show_log() { # the task's own lines: shoplake's output, the exception, alerts, state changes
  grep -E '\[shoplake\]|shoplake exit code|SHOPLAKE|new_state=|Error: ' "$TMP/$1.log" | grep -Ev '^ *File |py\.warnings' |
    sed -E "s/^[0-9T:.-]+Z //; s/ +\[[A-Za-z0-9_.]+\]( correlation_id=[^ ]+)? loc=[^ ]+//; s/ ?(ti_id|rows_affected)=[^ ]+//g; s/unusual_prefix_[0-9a-f]+_//g; s#$TMP#\\\$TMP#g" |
    tail -"${2:-25}" | sed 's/^/    | /'
}
summary() { # the report fields worth printing
  "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print(" ".join(f"{k}={r[k]}" for k in ("date","status","table_version","rows_read","rows_valid","rows_inserted","rows_updated","rows_deleted","rows_unchanged") if k in r))' "$1"
}

# --- (a) a scheduled-style run loads yesterday's export ---------------------------------------
A=2019-04-02T03:00:00+00:00
log "(a) airflow dags test $DAG_ID $A  -> expects the export of 2019-04-01"
dag_test a "$A"
[ "$DAG_RC" = 0 ] || {
  show_log a 40
  fail "(a) dags test exited $DAG_RC"
}
[ "$(ti "$A" 's["tasks"]["ingest_subprocess"]["state"]')" = success ] || fail "(a) ingest_subprocess not success"
[ "$(ti "$A" 's["tasks"]["ingest_kubernetes"]["state"]')" = skipped ] || fail "(a) ingest_kubernetes not skipped"
REPORT_A=$(report a)
[ -n "$REPORT_A" ] || fail "(a) no JSON report in the task log"
log "    report: $(summary "$REPORT_A")"
[ "$(jfield "$REPORT_A" date)" = 2019-04-01 ] || fail "(a) report date is not 2019-04-01"
[ "$(jfield "$REPORT_A" status)" = committed ] || fail "(a) report status is not committed"
VALID=$(jfield "$REPORT_A" rows_valid)
N=$(count_date 2019-04-01)
{ [ "$N" -gt 0 ] && [ "$N" = "$VALID" ]; } || fail "(a) table has $N rows for 2019-04-01, report says $VALID valid"
[ "$(count_date 2019-04-02)" = 0 ] || fail "(a) 2019-04-02 was loaded too (wrong date resolution)"
ok "(a) 2019-04-01 is in the table: $N rows (= rows_valid), 2019-04-02 not loaded, table version $(jfield "$REPORT_A" table_version)"

# --- (b) the same date again, through the manual `date` param: no new version -----------------
HIST_BEFORE=$(history)
B=2019-04-05T03:00:00+00:00 # its own logical date would mean 2019-04-04 (no export): the param must win
log "(b) airflow dags test $DAG_ID $B --conf '{\"date\": \"2019-04-01\"}'  -> nothing to change"
dag_test b "$B" '{"date": "2019-04-01"}'
[ "$DAG_RC" = 0 ] || {
  show_log b 40
  fail "(b) dags test exited $DAG_RC"
}
REPORT_B=$(report b)
log "    report: $(summary "$REPORT_B")"
[ "$(jfield "$REPORT_B" date)" = 2019-04-01 ] || fail "(b) the date param did not win"
[ "$(jfield "$REPORT_B" status)" = unchanged ] || fail "(b) report status is not unchanged"
for f in rows_inserted rows_updated rows_deleted; do
  [ "$(jfield "$REPORT_B" "$f")" = 0 ] || fail "(b) $f is not 0"
done
[ "$(history)" = "$HIST_BEFORE" ] || fail "(b) table history changed on an identical re-run"
[ "$(count_date 2019-04-01)" = "$N" ] || fail "(b) row count for 2019-04-01 changed"
ok "(b) re-run of 2019-04-01: status unchanged, 0 inserted/updated/deleted, still $(versions) history entries"

# --- (c) export not there yet (exit 3): retried -----------------------------------------------
C=2019-04-11T03:00:00+00:00
log "(c) airflow dags test $DAG_ID $C  -> 2019-04-10 has no export: exit 3, retried"
dag_test c "$C"
[ "$DAG_RC" != 0 ] || fail "(c) dags test succeeded without an export"
show_log c 12
STATE_C=$(ti "$C" 's["tasks"]["ingest_subprocess"]')
HIST_C=$(ti "$C" 's["history"].get("ingest_subprocess")')
log "    task instance: $STATE_C; earlier tries: $HIST_C"
[ "$(ti "$C" 's["tasks"]["ingest_subprocess"]["try_number"]')" = $((RETRIES + 1)) ] ||
  fail "(c) exit 3 was not retried (expected $((RETRIES + 1)) tries)"
# dags test records the retry like the scheduler would: try 1 goes up_for_retry (the execution
# API logs the state change), is archived in task_instance_history, try 2 runs after retry_delay.
grep -q 'Task instance state updated.*new_state=up_for_retry' "$TMP/c.log" ||
  fail "(c) the task never went up_for_retry"
[ "$(ti "$C" '[h["try_number"] for h in s["history"].get("ingest_subprocess", [])]')" = "[1]" ] ||
  fail "(c) try 1 is not archived in task_instance_history"
grep -q 'SHOPLAKE RETRY .*export_date=2019-04-10 exit_code=3' "$TMP/c.log" || fail "(c) no retry log line"
[ "$(history)" = "$HIST_BEFORE" ] || fail "(c) table history changed"
ok "(c) exit 3: try 1 up_for_retry, try $((RETRIES + 1)) ran after retry_delay and failed (retries exhausted); table unchanged"

# --- (d) bad export (exit 4): failed at once, alert -------------------------------------------
D=2019-04-04T03:00:00+00:00
log "(d) airflow dags test $DAG_ID $D  -> 2019-04-03 header lacks application_id: exit 4, no retry"
dag_test d "$D"
[ "$DAG_RC" != 0 ] || fail "(d) dags test succeeded on a bad export"
show_log d 12
log "    task instance: $(ti "$D" 's["tasks"]["ingest_subprocess"]'); earlier tries: $(ti "$D" 's["history"].get("ingest_subprocess")')"
[ "$(ti "$D" 's["tasks"]["ingest_subprocess"]["state"]')" = failed ] || fail "(d) task not failed"
[ "$(ti "$D" 's["tasks"]["ingest_subprocess"]["try_number"]')" = 1 ] || fail "(d) exit 4 was retried"
[ "$(ti "$D" 's["history"].get("ingest_subprocess")')" = None ] || fail "(d) an earlier try exists"
grep -q 'SHOPLAKE ALERT dag=ingestion_shopify_configuration task=ingest_subprocess .*export_date=2019-04-03 exit_code=4' \
  "$TMP/d.log" || fail "(d) no alert line from on_failure_callback"
[ "$(history)" = "$HIST_BEFORE" ] || fail "(d) table history changed"
[ "$(count_date 2019-04-03)" = 0 ] || fail "(d) rows of the refused export are in the table"
ok "(d) exit 4: failed after 1 try, alert logged, table unchanged"

# --- (e) an invalid date param is refused before anything runs --------------------------------
E=2019-04-06T03:00:00+00:00
dag_test e "$E" '{"date": "2019-4-1"}'
[ "$DAG_RC" != 0 ] || fail "(e) an invalid date param was accepted"
grep -q "does not match\|ParamValidationError\|Invalid input for param" "$TMP/e.log" || {
  tail -5 "$TMP/e.log"
  fail "(e) no param validation error"
}
[ "$(history)" = "$HIST_BEFORE" ] || fail "(e) table history changed"
ok "(e) conf {\"date\": \"2019-4-1\"} refused by the Param schema"

# --- (f) back-fill: exports 2019-05-01..07 are the runs at 2019-05-02..08 03:00 UTC ------------
log "(f) airflow backfill create --from-date 2019-05-02 --to-date 2019-05-08T03:00:00+00:00 --dry-run"
"$AIRFLOW" backfill create --dag-id "$DAG_ID" --from-date 2019-05-02 --to-date 2019-05-08T03:00:00+00:00 \
  --max-active-runs 2 --dry-run >"$TMP/f.log" 2>&1 || {
  tail -20 "$TMP/f.log"
  fail "(f) backfill dry-run"
}
LOADS=$(grep -Eo '^\| 20[0-9-]{8} 03:00:00\+00:00' "$TMP/f.log" | cut -c3- |
  PYTHONPATH=$HERE/dags "$PY" -c '
import sys
from datetime import datetime
from ingestion_shopify_configuration import resolve_export_date
print(" ".join(resolve_export_date(datetime.fromisoformat(line.strip())) for line in sys.stdin))' 2>/dev/null)
[ "$LOADS" = "2019-05-01 2019-05-02 2019-05-03 2019-05-04 2019-05-05 2019-05-06 2019-05-07" ] ||
  fail "(f) the back-fill would load '$LOADS'"
ok "(f) the back-fill would run 7 runs loading exports $LOADS"

log "all Airflow checks passed in $((SECONDS - START))s"
