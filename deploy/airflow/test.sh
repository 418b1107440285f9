#!/usr/bin/env bash
# Tests deploy/airflow/dags (one ingestion DAG per table definition, the tables as Airflow Assets,
# the example downstream DAGs, the OpenLineage parent, the shopify_redact DAG) for real with Airflow 3.3.2 and the built
# shoplake binary: `airflow dags test` runs the DAGs in-process against a temporary sqlite metadata
# DB, temporary exports and a temporary lake; a real scheduler + api-server run the downstream DAGs.
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
# Checks, in order: venv; unit tests (tests/test_*.py: DagBag, one DAG per definition, ids,
# schedule 03:00 UTC, params, assets, date resolution, arguments and exit-code mapping of both
# runners, the definitions reader against `shoplake tables --format json`); then, FOR EVERY TABLE
# (shopify_configuration, shopify_usage_daily), `airflow dags test` runs checked in the table
# (shoplake query/history) and in the metadata DB (task states, tries, asset events):
#   (a) scheduled-style run, logical date 2019-04-02T03:00Z -> loads 2019-04-01; one asset event
#       whose extra is the report's date, version and row counts; the downstream DAG is queued
#   (b) manual run with conf {"date": "2019-04-01"}         -> unchanged, no new table version
#   (c) export missing (exit 3)                             -> up_for_retry, then retried; no event
#   (d) export with a renamed header column (exit 4)        -> failed after one try, alert; no event
#   (f) `airflow backfill create --dry-run`                 -> the runs load the intended exports
# and once: (e) conf {"date": "2019-4-1"} -> refused by the Param schema; (h) a scheduler and an
# api-server turn the queued asset events into downstream runs, which read the loaded version with
# `shoplake query --as-of`; (i) shopify_redact with conf {"shop_id": <a shop in every table>}: an
# empty id refused; with {"purge": false} the rows go but verify fails at once (exit 4) naming the
# older versions' objects; by default (--purge) the shop is nowhere and verify succeeds; evidence in
# XCom, neither the shop id nor the erasure key in the logs or the erasures' commits, and a re-load
# (which needs the key, from the same Variable) keeps the shops out; (g) a load with --lineage-file
# and Airflow's OpenLineage file transport on: shoplake's events name the Airflow task run (and DAG
# run) as parent. Exits non-zero on the first failed check; (i) fails until the binary has
# `erase --purge`, (g) until it emits OpenLineage events (it is last).
set -Eeuo pipefail
# Any unexpected failing command ends the test loudly, not silently through set -e.
trap 'echo "[airflow-test] FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}
VENV=$CACHE/airflow-venv
REQUIREMENTS=$HERE/requirements.txt
PY311=${SHOPLAKE_PYTHON311:-python3.11}
SHOPLAKE_BIN=${SHOPLAKE_BIN:-$CACHE/target/debug/shoplake}
BIN_WAIT_SECS=${SHOPLAKE_BIN_WAIT_SECS:-900}
PIP_VERSION=26.3
RETRIES=1 # retries used by this test (production default 6, every 30 min)
DOWNSTREAM_WAIT_SECS=${DOWNSTREAM_WAIT_SECS:-600}
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
SERVICE_PIDS=() # process groups of the api-server and scheduler started in (h)
stop_services() { # TERM each service (it stops its own workers), then KILL what is left of its group
  local pid alive i
  for pid in "${SERVICE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 60; i++)); do
    alive=0
    for pid in "${SERVICE_PIDS[@]}"; do ! kill -0 "$pid" 2>/dev/null || alive=1; done
    ((alive)) || break
    sleep 0.5
  done
  # (the scheduler can wait forever on an idle LocalExecutor worker: "Signal again if you don't want to wait")
  for pid in "${SERVICE_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for pid in "${SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SERVICE_PIDS=()
}
cleanup() {
  stop_services
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
mkdir -p "$TMP/bin"
cp "$SHOPLAKE_BIN" "$TMP/bin/shoplake"
BIN=$TMP/bin/shoplake
SOURCE=$TMP/raw
LAKE=$TMP/lake
export RUST_LOG=${RUST_LOG:-warn}
# The Variable and the DAG files' own settings must be what is used, nothing inherited.
unset SHOPLAKE_SOURCE SHOPLAKE_TABLE SHOPLAKE_TABLE_NAME SHOPLAKE_REJECTS_TABLE SHOPLAKE_TABLES \
  AWS_ENDPOINT_URL OPENLINEAGE_URL OPENLINEAGE_NAMESPACE OPENLINEAGE_PARENT_ID \
  OPENLINEAGE_ROOT_PARENT_ID SHOPLAKE_LINEAGE_FILE SHOPLAKE_ERASURE_KEY AIRFLOW_VAR_SHOPLAKE_ERASURE_SECRET
export SHOPLAKE_LAKE=$LAKE # parse time: each table's Asset URI is file://$LAKE/<table_path>
# The walk below runs for the app's tables, both keyed by the shop (the redact DAG erases a shop
# by that key from every table). The Shopify catalog tables (products, customers, Bulk
# Operations) get their DAGs from the same factory (tests/test_table_definitions.py reads every
# definition); walking them here too would triple this tier's time for the same code path.
TABLES_DIR=$TMP/app-tables
mkdir -p "$TABLES_DIR"
cp -r "$REPO/tables/shopify_configuration" "$REPO/tables/shopify_usage_daily" "$TABLES_DIR/"
export SHOPLAKE_TABLES=$TABLES_DIR

# --- the tables, as shoplake lists them -------------------------------------------------------
"$BIN" tables --format json --tables "$TABLES_DIR" --source "$SOURCE" --lake "$LAKE" >"$TMP/tables.json"
tinfo() { # tinfo NAME FIELD: a field of `shoplake tables --format json` for table NAME
  "$PY" -c 'import json,sys; t={t["name"]: t for t in json.load(open(sys.argv[1]))["tables"]}; print(t[sys.argv[2]][sys.argv[3]])' \
    "$TMP/tables.json" "$1" "$2"
}
mapfile -t TABLES < <("$PY" -c 'import json,sys; [print(t["name"]) for t in json.load(open(sys.argv[1]))["tables"]]' "$TMP/tables.json")
[[ " ${TABLES[*]} " == *" shopify_configuration "* && " ${TABLES[*]} " == *" shopify_usage_daily "* ]] ||
  fail "the built-in tables are not all defined in $TABLES_DIR: ${TABLES[*]}"
export_of() { local p; p=$(tinfo "$1" source_pattern) && echo "${p//\{date\}/$2}"; }

# --- exports of every table: 2019-04-01/-02 good, 2019-04-03 with its first header column renamed
# (a missing column: exit 4), 2019-04-10 none (exit 3) ---------------------------------------
"$BIN" generate --tables "$TABLES_DIR" --all-tables --from 2019-04-01 --to 2019-04-03 --rows 300 --out "$SOURCE" >/dev/null
for t in "${TABLES[@]}"; do
  bad=$(export_of "$t" 2019-04-03)
  sed -i '1s/^\(\xEF\xBB\xBF\)\?\([A-Za-z0-9_]*\),/\1\2_renamed,/' "$bad"
  [[ $(head -1 "$bad") == *_renamed,* ]] || fail "could not rename the first header column of $bad"
  [ ! -e "$(export_of "$t" 2019-04-10)" ] || fail "2019-04-10 must have no export for $t"
done

# --- Airflow home, metadata DB, Variables ------------------------------------------------------
export AIRFLOW_HOME=$TMP/airflow-home
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the clone
export AIRFLOW__CORE__DAGS_FOLDER=$HERE/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO
export SHOPLAKE_DAG_RETRIES=$RETRIES SHOPLAKE_DAG_RETRY_DELAY_SECONDS=1
# (h) runs a scheduler and an api-server: free ports, one JWT secret shared by every process.
read -r API_PORT LOG_PORT < <("$PY" -c 'import socket
ss = [socket.socket() for _ in range(2)]
[s.bind(("127.0.0.1", 0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])')
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$API_PORT/execution/
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$LOG_PORT
AIRFLOW__API_AUTH__JWT_SECRET=$("$PY" -c 'import secrets; print(secrets.token_hex(32))')
export AIRFLOW__API_AUTH__JWT_SECRET
mkdir -p "$AIRFLOW_HOME"
timed "airflow db migrate" "$TMP/db-migrate.log" "$AIRFLOW" db migrate ||
  {
    tail -30 "$TMP/db-migrate.log"
    fail "airflow db migrate"
  }

# set_variables [JSON]: the test copy of variables.json (this binary, exports and lake), updated
# with JSON (merged into shoplake_ingestion), imported into the metadata DB
set_variables() {
  local update=${1:-}
  [ -n "$update" ] || update='{}'
  "$PY" - "$HERE/variables.json" "$TMP/variables.json" "$BIN" "$SOURCE" "$LAKE/shopify_configuration" "$update" <<'EOF'
import json, sys
src, dst, binary, source, table, update = sys.argv[1:]
variables = json.load(open(src))
cfg = variables["shoplake_ingestion"]
cfg.update(runner="subprocess", binary=binary, source=source, table=table,
           aws_region=None, aws_endpoint_url=None)
cfg.update(json.loads(update))
json.dump(variables, open(dst, "w"), indent=2)
EOF
  "$AIRFLOW" variables import "$TMP/variables.json" >"$TMP/variables.log" 2>&1 ||
    {
      cat "$TMP/variables.log"
      fail "airflow variables import"
    }
}
set_variables
# (into a file first: `| grep -q` would SIGPIPE the writer and fail under pipefail)
"$AIRFLOW" variables get shoplake_ingestion >"$TMP/variable.json" 2>/dev/null || fail "airflow variables get"
grep -q "\"table\": \"$LAKE/shopify_configuration\"" "$TMP/variable.json" ||
  fail "Variable shoplake_ingestion not imported with the test table"
ok "Variables imported from a test copy of variables.json (binary, source and table in $TMP)"

# --- 1. DAG import and unit tests -------------------------------------------------------------
log "DAG import + unit tests (DagBag, one DAG per definition, schedule, params, assets, both runners)"
timed "unit tests" "$TMP/unit.log" env SHOPLAKE_TEST_BINARY="$BIN" "$PY" -m unittest discover -s "$HERE/tests" -p 'test_*.py' -v ||
  {
    grep -v '^20[0-9][0-9]-' "$TMP/unit.log" | tail -60
    fail "DAG unit tests"
  }
grep -E '^(test_|Ran |OK)' "$TMP/unit.log" | sed 's/^/    /'
# Register every DAG of the folder in the metadata DB (as the DAG processor would), then read the
# import errors it recorded. New DAGs are paused (dags_are_paused_at_creation).
timed "dags reserialize" "$TMP/reserialize.log" "$AIRFLOW" dags reserialize || fail "airflow dags reserialize"
"$AIRFLOW" dags list-import-errors -o plain >"$TMP/import-errors.log" 2>&1 || true
if grep -q "ingestion_tables.py\|example_downstream.py\|shopify_redact.py" "$TMP/import-errors.log"; then
  cat "$TMP/import-errors.log"
  fail "airflow dags list-import-errors reports a DAG file"
fi
ok "no import errors; DAGs: $(printf 'ingestion_%s ' "${TABLES[@]}")$(printf 'example_downstream_%s ' "${TABLES[@]}")shopify_redact"
# The downstream DAGs must be unpaused before a load for its asset event to queue them.
for t in "${TABLES[@]}"; do "$AIRFLOW" dags unpause "example_downstream_$t" >/dev/null 2>&1 || fail "unpause example_downstream_$t"; done

# --- helpers for the dags test runs ---------------------------------------------------------
location() { tinfo "$1" table; } # <lake>/<table_path>, as shoplake computes it
history() { "$BIN" history --tables "$TABLES_DIR" --table-name "$1" --table "$(location "$1")" --format json; }
versions() { history "$1" | wc -l; }
count_date() { # count_date TABLE DATE: rows of the date in the table
  "$BIN" query --tables "$TABLES_DIR" --table-name "$1" --table "$(location "$1")" --format json \
    --sql "SELECT count(*) AS n FROM $1 WHERE $(tinfo "$1" partition_by) = '$2'" |
    "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); r=d[0] if isinstance(d,list) else d; print(r["n"])'
}
# dag_test NAME DAG_ID LOGICAL_DATE [CONF]: airflow dags test, output in $TMP/NAME.log, sets DAG_RC
dag_test() {
  local name=$1 dag=$2 when=$3 conf=${4:-}
  local args=(dags test "$dag" "$when")
  [ -z "$conf" ] || args+=(--conf "$conf")
  DAG_RC=0
  timed "dags test ($name)" "$TMP/$name.log" "$AIRFLOW" "${args[@]}" || DAG_RC=$?
}
# ti DAG_ID LOGICAL_DATE EXPR: read the metadata DB for that run, print the python expression EXPR of it (s)
ti() {
  "$PY" "$HERE/tests/ti_state.py" "$1" "$2" 2>/dev/null |
    "$PY" -c "import json,sys; s=json.load(sys.stdin); print($3)"
}
# assets_snapshot TABLE: the metadata DB's view of the table's asset (tests/asset_state.py:
# events, queue, downstream runs), saved for `assets` (one Airflow import, not one per question)
assets_snapshot() {
  "$PY" "$HERE/tests/asset_state.py" "$1" "example_downstream_$1" >"$TMP/assets-$1.json" 2>"$TMP/assets-$1.err" ||
    {
      tail -5 "$TMP/assets-$1.err"
      fail "tests/asset_state.py $1"
    }
}
# assets TABLE EXPR: print the python expression EXPR of TABLE's last snapshot (s)
assets() { "$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print($2)" "$TMP/assets-$1.json"; }
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
  "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print(" ".join(f"{k}={r[k]}" for k in ("table_name","date","status","table_version","rows_read","rows_valid","rows_inserted","rows_updated","rows_deleted","rows_unchanged") if k in r))' "$1"
}
# extra_matches REPORT EXTRA: the asset event's extra carries the report's date, version, counts
extra_matches() {
  "$PY" -c '
import json, sys
report, extra = json.loads(sys.argv[1]), json.loads(sys.argv[2])
keys = ["date", "status", "table_version", "table_name"] + [k for k in report if k.startswith("rows_")]
bad = {k: (report.get(k), extra.get(k)) for k in keys if report.get(k) != extra.get(k)}
sys.exit(f"extra differs from the report (report, extra): {bad}" if bad else 0)' "$1" "$2"
}

# --- (a)-(d), (f) for one table ---------------------------------------------------------------
check_table() {
  local t=$1 dag=ingestion_$1 ev0 ev n valid
  local A=2019-04-02T03:00:00+00:00 B=2019-04-05T03:00:00+00:00 C=2019-04-11T03:00:00+00:00 D=2019-04-04T03:00:00+00:00
  log "=== $dag (exports $(tinfo "$t" source_pattern), table $(location "$t"))"

  # (a) a scheduled-style run loads yesterday's export; its asset event carries the report
  log "(a) airflow dags test $dag $A  -> expects the export of 2019-04-01"
  assets_snapshot "$t"
  ev0=$(assets "$t" 'len(s["events"])')
  dag_test "a-$t" "$dag" "$A"
  [ "$DAG_RC" = 0 ] || {
    show_log "a-$t" 40
    fail "(a) $t: dags test exited $DAG_RC"
  }
  [ "$(ti "$dag" "$A" 's["tasks"]["ingest_subprocess"]["state"]')" = success ] || fail "(a) $t: ingest_subprocess not success"
  [ "$(ti "$dag" "$A" 's["tasks"]["ingest_kubernetes"]["state"]')" = skipped ] || fail "(a) $t: ingest_kubernetes not skipped"
  REPORT_A=$(report "a-$t")
  [ -n "$REPORT_A" ] || fail "(a) $t: no JSON report in the task log"
  log "    report: $(summary "$REPORT_A")"
  [ "$(jfield "$REPORT_A" table_name)" = "$t" ] || fail "(a) $t: the report is about table $(jfield "$REPORT_A" table_name)"
  [ "$(jfield "$REPORT_A" date)" = 2019-04-01 ] || fail "(a) $t: report date is not 2019-04-01"
  [ "$(jfield "$REPORT_A" status)" = committed ] || fail "(a) $t: report status is not committed"
  valid=$(jfield "$REPORT_A" rows_valid)
  n=$(count_date "$t" 2019-04-01)
  { [ "$n" -gt 0 ] && [ "$n" = "$valid" ]; } || fail "(a) $t: table has $n rows for 2019-04-01, report says $valid valid"
  [ "$(count_date "$t" 2019-04-02)" = 0 ] || fail "(a) $t: 2019-04-02 was loaded too (wrong date resolution)"
  ok "(a) $t: 2019-04-01 is in the table: $n rows (= rows_valid), 2019-04-02 not loaded, table version $(jfield "$REPORT_A" table_version)"
  assets_snapshot "$t"
  [ "$(assets "$t" 's["asset"]["uri"]')" = "file://$(location "$t")" ] || fail "(a) $t: asset URI is not file://$(location "$t")"
  ev=$(assets "$t" 'len(s["events"])')
  [ "$ev" = $((ev0 + 1)) ] || fail "(a) $t: $((ev - ev0)) asset events recorded, expected 1"
  EXTRA_A=$(assets "$t" 'json.dumps(s["events"][-1]["extra"], sort_keys=True)')
  extra_matches "$REPORT_A" "$EXTRA_A" || fail "(a) $t: asset event extra $EXTRA_A"
  [ "$(assets "$t" 's["events"][-1]["source_dag_id"], s["events"][-1]["source_task_id"]')" = "$dag ingest_subprocess" ] ||
    fail "(a) $t: the asset event does not come from $dag.ingest_subprocess"
  # dags test has no scheduler: the event queues the downstream DAG (an AssetDagRunQueue row),
  # it creates no DagRun; (h) starts a scheduler, which turns the queue into a run.
  [ "$(assets "$t" '"example_downstream_'"$t"'" in s["queued_for"] and not s["downstream"]["runs"]')" = True ] ||
    fail "(a) $t: example_downstream_$t is not queued by the asset event: $(assets "$t" 's["queued_for"], s["downstream"]')"
  ok "(a) $t: asset event $(assets "$t" 's["asset"]["uri"]') extra $EXTRA_A; example_downstream_$t queued"
  EXTRA_A_BY_TABLE[$t]=$EXTRA_A
  EVENT_A_BY_TABLE[$t]=$(assets "$t" 's["events"][-1]["id"]')

  # (b) the same date again, through the manual `date` param: no new version
  local hist_before report_b
  hist_before=$(history "$t")
  log "(b) airflow dags test $dag $B --conf '{\"date\": \"2019-04-01\"}'  -> nothing to change"
  dag_test "b-$t" "$dag" "$B" '{"date": "2019-04-01"}'
  [ "$DAG_RC" = 0 ] || {
    show_log "b-$t" 40
    fail "(b) $t: dags test exited $DAG_RC"
  }
  report_b=$(report "b-$t")
  log "    report: $(summary "$report_b")"
  [ "$(jfield "$report_b" date)" = 2019-04-01 ] || fail "(b) $t: the date param did not win"
  [ "$(jfield "$report_b" status)" = unchanged ] || fail "(b) $t: report status is not unchanged"
  for f in rows_inserted rows_updated rows_deleted; do
    [ "$(jfield "$report_b" "$f")" = 0 ] || fail "(b) $t: $f is not 0"
  done
  [ "$(history "$t")" = "$hist_before" ] || fail "(b) $t: table history changed on an identical re-run"
  [ "$(count_date "$t" 2019-04-01)" = "$n" ] || fail "(b) $t: row count for 2019-04-01 changed"
  # A successful task always records its outlet's event: status "unchanged", the same version.
  assets_snapshot "$t"
  extra_matches "$report_b" "$(assets "$t" 'json.dumps(s["events"][-1]["extra"])')" || fail "(b) $t: asset event extra"
  ok "(b) $t: re-run of 2019-04-01: status unchanged, 0 inserted/updated/deleted, still $(versions "$t") history entries; event says unchanged"

  # (c) export not there yet (exit 3): retried; a failed task records no asset event
  ev0=$(assets "$t" 'len(s["events"])')
  log "(c) airflow dags test $dag $C  -> 2019-04-10 has no export: exit 3, retried"
  dag_test "c-$t" "$dag" "$C"
  [ "$DAG_RC" != 0 ] || fail "(c) $t: dags test succeeded without an export"
  show_log "c-$t" 12
  log "    task instance: $(ti "$dag" "$C" 's["tasks"]["ingest_subprocess"]'); earlier tries: $(ti "$dag" "$C" 's["history"].get("ingest_subprocess")')"
  [ "$(ti "$dag" "$C" 's["tasks"]["ingest_subprocess"]["try_number"]')" = $((RETRIES + 1)) ] ||
    fail "(c) $t: exit 3 was not retried (expected $((RETRIES + 1)) tries)"
  # dags test records the retry like the scheduler would: try 1 goes up_for_retry (the execution
  # API logs the state change), is archived in task_instance_history, try 2 runs after retry_delay.
  grep -q 'Task instance state updated.*new_state=up_for_retry' "$TMP/c-$t.log" || fail "(c) $t: the task never went up_for_retry"
  [ "$(ti "$dag" "$C" '[h["try_number"] for h in s["history"].get("ingest_subprocess", [])]')" = "[1]" ] ||
    fail "(c) $t: try 1 is not archived in task_instance_history"
  grep -q "SHOPLAKE RETRY dag=$dag .*export_date=2019-04-10 exit_code=3" "$TMP/c-$t.log" || fail "(c) $t: no retry log line"
  [ "$(history "$t")" = "$hist_before" ] || fail "(c) $t: table history changed"
  assets_snapshot "$t"
  [ "$(assets "$t" 'len(s["events"])')" = "$ev0" ] || fail "(c) $t: a failed load recorded an asset event"
  ok "(c) $t: exit 3: try 1 up_for_retry, try $((RETRIES + 1)) ran after retry_delay and failed; table unchanged, no asset event"

  # (d) bad export (exit 4): failed at once, alert, no asset event
  log "(d) airflow dags test $dag $D  -> the 2019-04-03 header lacks a column: exit 4, no retry"
  dag_test "d-$t" "$dag" "$D"
  [ "$DAG_RC" != 0 ] || fail "(d) $t: dags test succeeded on a bad export"
  show_log "d-$t" 12
  [ "$(ti "$dag" "$D" 's["tasks"]["ingest_subprocess"]["state"]')" = failed ] || fail "(d) $t: task not failed"
  [ "$(ti "$dag" "$D" 's["tasks"]["ingest_subprocess"]["try_number"]')" = 1 ] || fail "(d) $t: exit 4 was retried"
  [ "$(ti "$dag" "$D" 's["history"].get("ingest_subprocess")')" = None ] || fail "(d) $t: an earlier try exists"
  grep -q "SHOPLAKE ALERT dag=$dag task=ingest_subprocess .*export_date=2019-04-03 exit_code=4" "$TMP/d-$t.log" ||
    fail "(d) $t: no alert line from on_failure_callback"
  [ "$(history "$t")" = "$hist_before" ] || fail "(d) $t: table history changed"
  [ "$(count_date "$t" 2019-04-03)" = 0 ] || fail "(d) $t: rows of the refused export are in the table"
  assets_snapshot "$t"
  [ "$(assets "$t" 'len(s["events"])')" = "$ev0" ] || fail "(d) $t: a failed load recorded an asset event"
  ok "(d) $t: exit 4: failed after 1 try, alert logged, table unchanged, no asset event"

  # (f) back-fill: exports 2019-05-01..07 are the runs at 2019-05-02..08 03:00 UTC
  local loads
  log "(f) airflow backfill create --dag-id $dag --from-date 2019-05-02 --to-date 2019-05-08T03:00:00+00:00 --dry-run"
  "$AIRFLOW" backfill create --dag-id "$dag" --from-date 2019-05-02 --to-date 2019-05-08T03:00:00+00:00 \
    --max-active-runs 2 --dry-run >"$TMP/f-$t.log" 2>&1 || {
    tail -20 "$TMP/f-$t.log"
    fail "(f) $t: backfill dry-run"
  }
  loads=$(grep -Eo '^\| 20[0-9-]{8} 03:00:00\+00:00' "$TMP/f-$t.log" | cut -c3- |
    PYTHONPATH=$HERE/dags "$PY" -c '
import sys
from datetime import datetime
from shoplake_airflow.ingest import resolve_export_date
print(" ".join(resolve_export_date(datetime.fromisoformat(line.strip())) for line in sys.stdin))' 2>/dev/null)
  [ "$loads" = "2019-05-01 2019-05-02 2019-05-03 2019-05-04 2019-05-05 2019-05-06 2019-05-07" ] ||
    fail "(f) $t: the back-fill would load '$loads'"
  ok "(f) $t: the back-fill would run 7 runs loading exports $loads"
}

declare -A EXTRA_A_BY_TABLE EVENT_A_BY_TABLE # table -> the extra and id of its (a) event, for (h)
for t in "${TABLES[@]}"; do check_table "$t"; done

# --- (e) an invalid date param is refused before anything runs (the same Params in every DAG) --
E=2019-04-06T03:00:00+00:00
HIST_BEFORE=$(history shopify_configuration)
dag_test e ingestion_shopify_configuration "$E" '{"date": "2019-4-1"}'
[ "$DAG_RC" != 0 ] || fail "(e) an invalid date param was accepted"
grep -q "does not match\|ParamValidationError\|Invalid input for param" "$TMP/e.log" || {
  tail -5 "$TMP/e.log"
  fail "(e) no param validation error"
}
[ "$(history shopify_configuration)" = "$HIST_BEFORE" ] || fail "(e) table history changed"
ok "(e) conf {\"date\": \"2019-4-1\"} refused by the Param schema"

# --- (h) the downstream DAGs: a scheduler turns the queued asset events into runs ---------------
# `airflow dags test` only records the event and the AssetDagRunQueue row (checked in (a)). Only
# the scheduler creates asset-triggered runs, and in Airflow 3 its executor's tasks report to the
# api-server's execution API: both run here, against the same sqlite DB, until every downstream
# run has finished. The ingestion DAGs stay paused, so the scheduler starts no load.
for t in "${TABLES[@]}"; do
  assets_snapshot "$t"
  [ "$(assets "$t" 's["paused"]["ingestion_'"$t"'"]')" = True ] || fail "(h) ingestion_$t is not paused"
done
log "(h) airflow api-server (port $API_PORT) + airflow scheduler -> example_downstream_* runs"
t0=$SECONDS
setsid "$AIRFLOW" api-server --host 127.0.0.1 --port "$API_PORT" >"$TMP/api-server.log" 2>&1 &
SERVICE_PIDS+=("$!")
until curl -sf "http://127.0.0.1:$API_PORT/api/v2/monitor/health" >/dev/null; do
  ((SECONDS - t0 < 120)) || {
    tail -20 "$TMP/api-server.log"
    fail "(h) the api-server did not answer within 120 s"
  }
  sleep 1
done
setsid "$AIRFLOW" scheduler >"$TMP/scheduler.log" 2>&1 &
SERVICE_PIDS+=("$!")
for t in "${TABLES[@]}"; do
  until assets_snapshot "$t" && [ "$(assets "$t" 'any(r["state"] in ("success", "failed") for r in s["downstream"]["runs"])')" = True ]; do
    ((SECONDS - t0 < DOWNSTREAM_WAIT_SECS)) || {
      grep -iE 'error|example_downstream' "$TMP/scheduler.log" | tail -20
      fail "(h) no finished example_downstream_$t run after ${DOWNSTREAM_WAIT_SECS}s: $(assets "$t" 's["downstream"]')"
    }
    sleep 3
  done
done
stop_services
log "time: downstream runs $((SECONDS - t0))s"
downstream_summary() { # the JSON the downstream task printed after "SHOPLAKE DOWNSTREAM" (task logs are JSON lines)
  "$PY" - "$AIRFLOW_HOME/logs/dag_id=example_downstream_$1" <<'EOF'
import json, pathlib, sys
found = []
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.log")):
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line).get("event", "")
        except (ValueError, AttributeError):
            continue
        if isinstance(event, str) and event.startswith("SHOPLAKE DOWNSTREAM "):
            found.append(event[len("SHOPLAKE DOWNSTREAM "):])
print(found[-1] if found else "")
EOF
}
for t in "${TABLES[@]}"; do
  assets_snapshot "$t"
  extra=${EXTRA_A_BY_TABLE[$t]}
  run=$(assets "$t" 'json.dumps(s["downstream"]["runs"][0])')
  [ "$(jfield "$run" run_type)" = asset_triggered ] || fail "(h) $t: downstream run is not asset-triggered: $run"
  [ "$(jfield "$run" state)" = success ] || {
    grep -rh "read_loaded_version\|Error\|SHOPLAKE" "$AIRFLOW_HOME/logs/dag_id=example_downstream_$t" 2>/dev/null | tail -20
    fail "(h) $t: downstream run $run"
  }
  # The run consumed the event of (a), the one that queued it (the scheduler gives a run the events
  # up to the queue time; (b)'s event came later, and waits for the next run).
  [ "$(assets "$t" "${EVENT_A_BY_TABLE[$t]} in s[\"downstream\"][\"runs\"][0][\"consumed_event_ids\"]")" = True ] ||
    fail "(h) $t: the downstream run did not consume the event of (a) (id ${EVENT_A_BY_TABLE[$t]}): $run"
  line=$(downstream_summary "$t")
  [ -n "$line" ] || fail "(h) $t: no SHOPLAKE DOWNSTREAM line in the downstream task's log"
  [ "$(jfield "$line" table_version)" = "$(jfield "$extra" table_version)" ] ||
    fail "(h) $t: the downstream read version $(jfield "$line" table_version), the load made $(jfield "$extra" table_version)"
  [ "$(jfield "$line" rows)" = "$(jfield "$extra" rows_valid)" ] || fail "(h) $t: downstream read $line"
  ok "(h) $t: example_downstream_$t ran (asset_triggered, success): shoplake query --as-of $(jfield "$line" table_version) read $(jfield "$line" rows) rows of $(jfield "$line" date)"
done

# --- (i) shopify_redact: erase a shop from every table, purge, verify ---------------------------
# Every table holds 2019-04-01 (loaded in (a)); the shops are the first two ids held by the key
# column of every table. The erasure key is the Variable shoplake_erasure_secret, as in production:
# the loads read it there too, and once a table has erasures every load needs it (the re-load
# below, (g)). Fails (does not skip) while the binary has no `erase --purge`.
I_BAD=2019-04-19T00:00:00+00:00 I_KEEP=2019-04-20T00:00:00+00:00 I=2019-04-22T00:00:00+00:00
I_RELOAD=2019-04-21T03:00:00+00:00
key_column() { "$PY" -c 'import json,sys; t={t["name"]: t for t in json.load(open(sys.argv[1]))["tables"]}; print(t[sys.argv[2]]["key"][0])' "$TMP/tables.json" "$1"; }
count_key() { # count_key TABLE VALUE: rows of the table whose key column holds VALUE
  "$BIN" query --tables "$TABLES_DIR" --table-name "$1" --table "$(location "$1")" --format json \
    --sql "SELECT count(*) AS n FROM $1 WHERE $(key_column "$1") = '$2'" |
    "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); r=d[0] if isinstance(d,list) else d; print(r["n"])'
}
all_history() { for t in "${TABLES[@]}"; do history "$t"; done; }
"$BIN" erase --help >"$TMP/erase-help.txt" 2>&1 || fail "(i) shoplake erase --help"
grep -q -- '--purge' "$TMP/erase-help.txt" || fail "(i) this binary has no 'erase --purge' (issue #27): shopify_redact purges by default"
shop_sql="SELECT k FROM ($(for t in "${TABLES[@]}"; do printf 'SELECT CAST(%s AS VARCHAR) AS k FROM %s INTERSECT ' "$(key_column "$t")" "$t"; done | sed 's/ INTERSECT $//')) ORDER BY k LIMIT 2"
"$BIN" query --tables "$TABLES_DIR" --lake "$LAKE" --format json --sql "$shop_sql" >"$TMP/i-shops.json" || fail "(i) $shop_sql"
mapfile -t SHOPS < <("$PY" -c 'import json,sys; [print(json.loads(l)["k"]) for l in open(sys.argv[1]) if l.strip()]' "$TMP/i-shops.json")
[ "${#SHOPS[@]}" = 2 ] || fail "(i) fewer than 2 shops have rows in every table: ${SHOPS[*]}"
SHOP_KEPT=${SHOPS[0]} SHOP=${SHOPS[1]} # erased without purge (older versions keep it), with purge
for s in "${SHOPS[@]}"; do
  for t in "${TABLES[@]}"; do [ "$(count_key "$t" "$s")" -ge 1 ] || fail "(i) the shop $s has no rows in $t"; done
done
ERASURE_SECRET=$("$PY" -c 'import secrets; print(secrets.token_hex(24))') # 48 bytes (>= 16)
"$AIRFLOW" variables set shoplake_erasure_secret "$ERASURE_SECRET" >"$TMP/i-variable.log" 2>&1 ||
  fail "airflow variables set shoplake_erasure_secret"
# redact_run NAME LOGICAL_DATE SHOP PURGE: run the DAG, check the shop's rows are gone from every
# table and the run's tasks, XCom and erasure commits (tests/check_redact.py), print its summary
redact_run() {
  local name=$1 when=$2 shop=$3 purge=$4 t
  log "(i) airflow dags test shopify_redact $when --conf '{\"shop_id\": \"<a shop in every table>\", \"purge\": $purge}'"
  dag_test "$name" shopify_redact "$when" "{\"shop_id\": \"$shop\", \"reason\": \"airflow-test\", \"purge\": $purge}"
  show_log "$name" 12
  for t in "${TABLES[@]}"; do
    [ "$(count_key "$t" "$shop")" = 0 ] || fail "(i) $t still has rows of the shop after the erase task"
  done
  "$PY" "$HERE/tests/ti_state.py" shopify_redact "$when" >"$TMP/$name-state.json" 2>/dev/null || fail "(i) tests/ti_state.py"
  "$PY" "$HERE/tests/check_redact.py" "$TMP/$name-state.json" "$purge" "$shop" "${TABLES[@]}" >"$TMP/$name-check.log" 2>&1 ||
    {
      cat "$TMP/$name-check.log"
      fail "(i) shopify_redact ($name): tasks, XCom or erasure commits"
    }
}

# A shop_id that breaks the Param schema is refused before anything runs.
HIST_BEFORE=$(all_history)
dag_test i-bad shopify_redact "$I_BAD" '{"shop_id": ""}'
[ "$DAG_RC" != 0 ] || fail "(i) an empty shop_id was accepted"
grep -q "Invalid input for param shop_id" "$TMP/i-bad.log" || {
  tail -5 "$TMP/i-bad.log"
  fail "(i) no param validation error for an empty shop_id"
}
[ "$(all_history)" = "$HIST_BEFORE" ] || fail "(i) a refused run changed a table"
ok "(i) conf {\"shop_id\": \"\"} refused by the Param schema, no table changed"

# Without purge the older versions still hold the value: verify exits 4, fails at once, names them.
redact_run i-keep "$I_KEEP" "$SHOP_KEPT" false
[ "$DAG_RC" != 0 ] || fail "(i) without --purge the run succeeded, but older versions still hold the value"
grep -q "SHOPLAKE ALERT dag=shopify_redact task=verify .*exit_code=4" "$TMP/i-keep.log" || fail "(i) no alert for verify's exit 4"
for t in "${TABLES[@]}"; do
  grep -q "SHOPLAKE STILL HOLDS THE VALUE table=$(location "$t") " "$TMP/i-keep.log" || fail "(i) the verify log names no object of $t"
done
ok "(i) conf {\"purge\": false}: the shop's rows gone; verify failed at once (exit 4, alert) naming the older versions' objects; $(cat "$TMP/i-keep-check.log")"

# The default (purge): the shop is nowhere, verify succeeds, its evidence is in XCom.
redact_run i "$I" "$SHOP" true
[ "$DAG_RC" = 0 ] || fail "(i) dags test shopify_redact exited $DAG_RC"
grep -q "SHOPLAKE REDACTED" "$TMP/i.log" || fail "(i) no SHOPLAKE REDACTED line"
ok "(i) shopify_redact (purge): the shop's rows gone from ${TABLES[*]}; verify succeeded; $(cat "$TMP/i-check.log")"
# Neither shop id nor the erasure key in the runs' logs (masked, never written).
if grep -rqF -e "$SHOP" -e "$SHOP_KEPT" -e "$ERASURE_SECRET" "$TMP/i.log" "$TMP/i-keep.log" \
  "$AIRFLOW_HOME/logs/dag_id=shopify_redact" 2>/dev/null; then
  fail "(i) a shop id or the erasure key is in a log of the runs"
fi
ok "(i) neither the shop ids nor the erasure key is in the runs' logs or the erasures' commits"

# A re-load of the erased date keeps both shops out; it needs the key, which reaches it from the Variable.
dag_test i-reload ingestion_shopify_configuration "$I_RELOAD" '{"date": "2019-04-01"}'
[ "$DAG_RC" = 0 ] || {
  show_log i-reload 20
  fail "(i) the re-load after the erasure failed (the erasure key must reach the load)"
}
report_i=$(report i-reload)
[ "$(jfield "$report_i" rows_suppressed)" = 2 ] || fail "(i) the re-load did not suppress the 2 erased shops: $(summary "$report_i")"
for s in "${SHOPS[@]}"; do
  [ "$(count_key shopify_configuration "$s")" = 0 ] || fail "(i) the re-load brought an erased shop back"
done
ok "(i) re-load of 2019-04-01 after the erasures: $(jfield "$report_i" status), rows_suppressed 2, both shops still absent"

# --- (g) lineage: shoplake's OpenLineage events name the Airflow task run as parent -------------
# One table's override adds --lineage-file; Airflow's own provider writes its events to a file
# transport (the oracle for the run ids). Fails (does not skip) until the binary emits events.
t=shopify_usage_daily
G=2019-04-03T03:00:00+00:00 # loads 2019-04-02: a new date, a commit
SHOPLAKE_EVENTS=$TMP/lineage/shoplake.jsonl
AIRFLOW_EVENTS=$TMP/lineage/airflow.jsonl
AIRFLOW_NS=shoplake-airflow-test
mkdir -p "$TMP/lineage"
set_variables "{\"table_overrides\": {\"$t\": {\"lineage_file\": \"$SHOPLAKE_EVENTS\"}}}"
log "(g) airflow dags test ingestion_$t $G with lineage_file (--lineage-file) and Airflow's OpenLineage on"
export AIRFLOW__OPENLINEAGE__TRANSPORT="{\"type\": \"file\", \"log_file_path\": \"$AIRFLOW_EVENTS\", \"append\": true}"
export AIRFLOW__OPENLINEAGE__NAMESPACE=$AIRFLOW_NS
dag_test "g-$t" "ingestion_$t" "$G"
unset AIRFLOW__OPENLINEAGE__TRANSPORT AIRFLOW__OPENLINEAGE__NAMESPACE
show_log "g-$t" 8
[ "$DAG_RC" = 0 ] || fail "(g) the load with --lineage-file failed (exit 2 above: this binary does not accept --lineage-file yet)"
"$PY" "$HERE/tests/check_lineage.py" "$SHOPLAKE_EVENTS" "$AIRFLOW_EVENTS" "ingestion_$t" ingest_subprocess "$AIRFLOW_NS" shoplake >"$TMP/g-check.log" 2>&1 ||
  {
    cat "$TMP/g-check.log"
    fail "(g) shoplake's OpenLineage events do not name the Airflow run as parent"
  }
ok "(g) $(cat "$TMP/g-check.log")"

log "all Airflow checks passed in $((SECONDS - START))s"
