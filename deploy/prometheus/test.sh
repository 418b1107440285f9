#!/usr/bin/env bash
# make metrics-test: shoplake's Prometheus metrics against the real programs.
#
#   - installs Debian's prometheus (for promtool), prometheus-node-exporter and
#     prometheus-pushgateway if they are missing (apt, one job at a time);
#   - checks deploy/prometheus/{alerts.yml,alerts_test.yml,prometheus.yml,
#     example.prom} with promtool;
#   - starts its own node_exporter (textfile collector only) and Pushgateway
#     on 127.0.0.1 on free ports, never the packages' services, and stops
#     them by PID when it exits;
#   - runs `shoplake ingest --metrics-file` and `--pushgateway` and compares
#     what node_exporter and the Pushgateway serve with the run report.
#
# The binary is $SHOPLAKE_BIN, else $CARGO_TARGET_DIR/debug/shoplake, else
# $HOME/.cache/shoplake/target/debug/shoplake. Ends with
# "metrics-test: N passed, N failed"; exits 1 if anything failed.
# KEEP_TMP=1 keeps the work directory (it is kept anyway when a check fails).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}"
bin="${SHOPLAKE_BIN:-${CARGO_TARGET_DIR:-$cache/target}/debug/shoplake}"
promquery=(python3 "$here/promquery.py")

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   - %s\n' "$*"; }
not_ok() { failed=$((failed + 1)); printf 'FAIL - %s\n' "$*"; }
note() { printf '%s\n' "$@" | sed 's/^/       /'; }

# --- programs -----------------------------------------------------------------
install_prometheus() {
  local missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v prometheus-node-exporter >/dev/null || missing+=(prometheus-node-exporter)
  command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "installing ${missing[*]} (apt)"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}")
  # Other jobs on this machine use apt at the same time: one at a time.
  if ! flock /tmp/shoplake-apt.lock nice -n 10 "${apt[@]}" >"$tmp/apt.log" 2>&1; then
    flock /tmp/shoplake-apt.lock nice -n 10 "${sudo[@]}" apt-get update -q >>"$tmp/apt.log" 2>&1
    flock /tmp/shoplake-apt.lock nice -n 10 "${apt[@]}" >>"$tmp/apt.log" 2>&1 || {
      cat "$tmp/apt.log"
      return 1
    }
  fi
  # On a machine with systemd (a laptop, a CI runner) the packages start and
  # enable their services on the default ports: this test uses its own
  # processes, so stop and disable the services it has just installed.
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    local pkg
    for pkg in "${missing[@]}"; do
      "${sudo[@]}" systemctl disable --now "$pkg" >/dev/null 2>&1 || true
    done
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids=()
# start_daemon NAME READY_PATH COMMAND... — @PORT@ in COMMAND is replaced by a
# free port; retried on another port if the process dies (port taken since).
# Sets daemon_port.
start_daemon() {
  local name="$1" ready="$2" attempt pid port
  shift 2
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    "${@//@PORT@/$port}" >"$tmp/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if curl -fsS -o /dev/null "http://127.0.0.1:$port$ready" 2>/dev/null; then
        pids+=("$pid")
        daemon_port="$port"
        echo "$name: pid $pid on 127.0.0.1:$port"
        return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$name did not start on port $port (attempt $attempt):"
    tail -5 "$tmp/$name.log"
  done
  return 1
}

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $failed -eq 0 && -z ${KEEP_TMP:-} ]]; then
    rm -rf "$tmp"
  else
    echo "work directory kept: $tmp"
  fi
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/shoplake-metrics.XXXXXX")"
trap cleanup EXIT
# Counted as a failure when the script dies of an unexpected error.
trap 'failed=$((failed + 1)); echo "FAIL - unexpected error at line $LINENO"' ERR

mkdir -p "$tmp/textfile"
install_prometheus
# --install: only the Debian packages (.ci/run, during the Rust build).
if [ "${1:-}" = --install ]; then exit 0; fi

# --- helpers --------------------------------------------------------------------
# num_eq A B: numerically equal (Prometheus writes 500, 500.0 or 5e+02 alike).
num_eq() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 == b + 0) }'; }
num_le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

# expect DESCRIPTION EXPECTED FILE METRIC [LABEL=VALUE...]: the one sample of
# METRIC with those labels in FILE equals EXPECTED.
expect() {
  local desc="$1" want="$2" file="$3" got
  shift 3
  if got="$("${promquery[@]}" "$@" <"$file" 2>"$tmp/promquery.err")" && num_eq "$got" "$want"; then
    ok "$desc ($got)"
  else
    not_ok "$desc: expected $want, got ${got:-nothing}"
    if [[ -s $tmp/promquery.err ]]; then note "$(cat "$tmp/promquery.err")"; fi
  fi
}

# value FILE METRIC [LABEL=VALUE...]: prints the sample's value, or nothing.
value() {
  local file="$1"
  shift
  "${promquery[@]}" "$@" <"$file" 2>/dev/null || true
}

json_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

scrape() { curl -fsS --max-time 10 "$1" >"$2"; }

# run_ingest NAME ARGS...: runs `shoplake ingest ARGS` with a time limit;
# stdout in $tmp/NAME.out, stderr in $tmp/NAME.err, exit code in rc.
run_ingest() {
  local name="$1"
  shift
  rc=0
  timeout 300 "$bin" ingest "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
}

show_stderr() { note "stderr of $1 (last 20 lines):" "$(tail -20 "$tmp/$1.err")"; }

echo "== the Prometheus side: promtool, node_exporter, Pushgateway =="
if out="$(promtool check rules "$here/alerts.yml" 2>&1)"; then ok "promtool check rules alerts.yml"; else not_ok "promtool check rules alerts.yml"; note "$out"; fi
if out="$(cd "$here" && promtool test rules alerts_test.yml 2>&1)"; then ok "promtool test rules alerts_test.yml (the alerts fire when they should)"; else not_ok "promtool test rules alerts_test.yml"; note "$out"; fi
if out="$(promtool check config "$here/prometheus.yml" 2>&1)"; then ok "promtool check config prometheus.yml"; else not_ok "promtool check config prometheus.yml"; note "$out"; fi
if out="$(promtool check metrics <"$here/example.prom" 2>&1)"; then ok "promtool check metrics < example.prom"; else not_ok "promtool check metrics < example.prom"; note "$out"; fi

start_daemon node_exporter /metrics prometheus-node-exporter \
  --web.listen-address=127.0.0.1:@PORT@ --web.disable-exporter-metrics \
  --collector.disable-defaults --collector.textfile \
  --collector.textfile.directory="$tmp/textfile"
node_url="http://127.0.0.1:$daemon_port/metrics"
# --persistence.file= : in memory only (Debian's default writes to /var/lib).
start_daemon pushgateway /-/ready prometheus-pushgateway \
  --web.listen-address=127.0.0.1:@PORT@ --persistence.file=
pg_port="$daemon_port"
pg_url="http://127.0.0.1:$pg_port"

# The fixture through node_exporter's textfile collector and the Pushgateway.
fixture_table='s3://lake/shopify_configuration'
cp "$here/example.prom" "$tmp/textfile/example.prom"
scrape "$node_url" "$tmp/node0.txt"
expect "node_exporter reads the textfile directory without error" 0 "$tmp/node0.txt" node_textfile_scrape_error
expect "node_exporter serves example.prom's rows read" 10000 "$tmp/node0.txt" shoplake_rows bucket=read table="$fixture_table"
rm "$tmp/textfile/example.prom"
b64="$(printf %s "$fixture_table" | base64 -w0 | tr '+/' '-_')"
curl -fsS --max-time 10 --data-binary @"$here/example.prom" "$pg_url/metrics/job/shoplake-fixture/table@base64/$b64"
scrape "$pg_url/metrics" "$tmp/pg0.txt"
expect "the Pushgateway serves a push-add of example.prom" 10000 "$tmp/pg0.txt" shoplake_rows bucket=read job=shoplake-fixture table="$fixture_table"
curl -fsS --max-time 10 -X DELETE "$pg_url/metrics/job/shoplake-fixture/table@base64/$b64"

echo "== shoplake =="
if [[ ! -x $bin ]]; then
  not_ok "no shoplake binary at $bin (build it, or set SHOPLAKE_BIN)"
elif ! help="$("$bin" ingest --help 2>&1)" || ! grep -q -- '--metrics-file' <<<"$help" || ! grep -q -- '--pushgateway' <<<"$help"; then
  not_ok "$bin ingest has no --metrics-file / --pushgateway option yet (issue #9 item 3): the shoplake checks did not run"
else
  day=2019-04-01
  missing_day=2019-04-02
  day_ts=1554076800 # 2019-04-01T00:00:00Z
  prom="$tmp/textfile/shoplake.prom"
  "$bin" generate --from "$day" --to "$day" --rows 500 --out "$tmp/raw" >/dev/null 2>"$tmp/generate.err"
  common=(--source "$tmp/raw" --table "$tmp/lake/t" --format json)

  # 1. A successful load with --metrics-file.
  t0="$(date +%s)"
  run_ingest run1 --date "$day" "${common[@]}" --metrics-file "$prom"
  t1="$(date +%s)"
  if [[ $rc -eq 0 ]]; then ok "ingest $day --metrics-file exits 0"; else not_ok "ingest $day --metrics-file exits $rc"; show_stderr run1; fi
  table="$(json_field "$tmp/run1.out" table)"
  echo "table label: $table"

  if [[ -f $prom ]]; then ok "the metrics file is written"; else not_ok "no metrics file at $prom"; fi
  left=()
  for f in "$tmp/textfile"/* "$tmp/textfile"/.[!.]*; do
    if [[ -e $f && $f != "$prom" ]]; then left+=("${f##*/}"); fi
  done
  if [[ ${#left[@]} -eq 0 ]]; then ok "nothing but shoplake.prom left in the textfile directory (temp file renamed)"; else not_ok "files left in the textfile directory: ${left[*]}"; fi
  if out="$(promtool check metrics <"$prom" 2>&1)"; then ok "promtool check metrics < shoplake.prom"; else not_ok "promtool check metrics < shoplake.prom"; note "$out"; fi
  for metric in shoplake_rows shoplake_rows_changed shoplake_run_duration_seconds shoplake_table_version \
    shoplake_run_exit_code shoplake_run_success shoplake_export_date_timestamp_seconds \
    shoplake_last_run_timestamp_seconds shoplake_last_success_timestamp_seconds; do
    if grep -qx "# TYPE $metric gauge" "$prom"; then ok "$metric is a gauge"; else not_ok "no '# TYPE $metric gauge' in the metrics file"; fi
  done

  scrape "$node_url" "$tmp/node1.txt"
  expect "node_exporter: the textfile parses (node_textfile_scrape_error)" 0 "$tmp/node1.txt" node_textfile_scrape_error
  for bucket in read valid filtered rejected duplicate; do
    expect "node_exporter: shoplake_rows{bucket=\"$bucket\"} = the report's rows_$bucket" \
      "$(json_field "$tmp/run1.out" "rows_$bucket")" "$tmp/node1.txt" shoplake_rows bucket="$bucket" table="$table"
  done
  for change in inserted updated deleted unchanged; do
    expect "node_exporter: shoplake_rows_changed{change=\"$change\"} = the report's rows_$change" \
      "$(json_field "$tmp/run1.out" "rows_$change")" "$tmp/node1.txt" shoplake_rows_changed change="$change" table="$table"
  done
  expect "node_exporter: shoplake_table_version = the report's" "$(json_field "$tmp/run1.out" table_version)" "$tmp/node1.txt" shoplake_table_version table="$table"
  expect "node_exporter: shoplake_run_exit_code" 0 "$tmp/node1.txt" shoplake_run_exit_code table="$table"
  expect "node_exporter: shoplake_run_success" 1 "$tmp/node1.txt" shoplake_run_success table="$table"
  expect "node_exporter: shoplake_export_date_timestamp_seconds = $day midnight UTC" "$day_ts" "$tmp/node1.txt" shoplake_export_date_timestamp_seconds table="$table"
  success1="$(value "$tmp/node1.txt" shoplake_last_success_timestamp_seconds table="$table")"
  last_run1="$(value "$tmp/node1.txt" shoplake_last_run_timestamp_seconds table="$table")"
  if [[ -n $success1 ]] && num_le "$t0" "$success1" && num_le "$success1" "$((t1 + 1))"; then
    ok "node_exporter: shoplake_last_success_timestamp_seconds is the run's time ($success1)"
  else
    not_ok "node_exporter: shoplake_last_success_timestamp_seconds '${success1}' not within the run ($t0..$t1)"
  fi
  if [[ -n $last_run1 ]] && num_eq "$last_run1" "$success1"; then ok "node_exporter: last_run = last_success after a success"; else not_ok "node_exporter: last_run '$last_run1' != last_success '$success1' after a success"; fi
  duration="$(value "$tmp/node1.txt" shoplake_run_duration_seconds table="$table")"
  if [[ -n $duration ]] && num_le 0 "$duration" && num_le "$duration" "$((t1 - t0 + 1))"; then ok "node_exporter: shoplake_run_duration_seconds ($duration)"; else not_ok "node_exporter: shoplake_run_duration_seconds '$duration' not within 0..$((t1 - t0 + 1))"; fi

  # 2. A failed run (the export is missing: exit 3) keeps the last success.
  sleep 1 # so that a new timestamp differs from the first run's
  t2="$(date +%s)"
  run_ingest run2 --date "$missing_day" "${common[@]}" --metrics-file "$prom"
  if [[ $rc -eq 3 ]]; then ok "ingest $missing_day (no export) exits 3"; else not_ok "ingest $missing_day (no export) exits $rc, expected 3"; show_stderr run2; fi
  if out="$(promtool check metrics <"$prom" 2>&1)"; then ok "promtool check metrics < shoplake.prom after a failed run"; else not_ok "promtool check metrics after a failed run"; note "$out"; fi
  scrape "$node_url" "$tmp/node2.txt"
  expect "node_exporter: the textfile parses after a failed run" 0 "$tmp/node2.txt" node_textfile_scrape_error
  expect "node_exporter: shoplake_run_exit_code after the failed run" 3 "$tmp/node2.txt" shoplake_run_exit_code table="$table"
  expect "node_exporter: shoplake_run_success after the failed run" 0 "$tmp/node2.txt" shoplake_run_success table="$table"
  expect "node_exporter: shoplake_last_success_timestamp_seconds kept from the successful run" "${success1:-missing}" "$tmp/node2.txt" shoplake_last_success_timestamp_seconds table="$table"
  last_run2="$(value "$tmp/node2.txt" shoplake_last_run_timestamp_seconds table="$table")"
  if [[ -n $last_run2 ]] && num_le "$t2" "$last_run2"; then ok "node_exporter: shoplake_last_run_timestamp_seconds is the failed run's ($last_run2)"; else not_ok "node_exporter: shoplake_last_run_timestamp_seconds '$last_run2' is not the failed run's (>= $t2)"; fi

  # 3. Pushgateway: a success, then a failure, pushed with push-add.
  t3="$(date +%s)"
  run_ingest run3 --date "$day" "${common[@]}" --pushgateway "$pg_url"
  t4="$(date +%s)"
  if [[ $rc -eq 0 ]]; then ok "ingest $day --pushgateway exits 0"; else not_ok "ingest $day --pushgateway exits $rc"; show_stderr run3; fi
  if grep -qi pushgateway "$tmp/run3.err"; then not_ok "a push to a working Pushgateway printed a warning"; show_stderr run3; else ok "no Pushgateway warning when the push works"; fi
  scrape "$pg_url/metrics" "$tmp/pg1.txt"
  expect "Pushgateway: shoplake_rows{bucket=\"read\",job=\"shoplake\",table=...} = the report's rows_read" \
    "$(json_field "$tmp/run3.out" rows_read)" "$tmp/pg1.txt" shoplake_rows bucket=read job=shoplake table="$table"
  expect "Pushgateway: shoplake_run_success" 1 "$tmp/pg1.txt" shoplake_run_success job=shoplake table="$table"
  expect "Pushgateway: no failed push (push_failure_time_seconds)" 0 "$tmp/pg1.txt" push_failure_time_seconds job=shoplake table="$table"
  groups="$(curl -fsS --max-time 10 "$pg_url/api/v1/metrics" | python3 -c '
import json, sys
print("\n".join(json.dumps(g["labels"], sort_keys=True) for g in json.load(sys.stdin)["data"]))')"
  want_group="$(python3 -c 'import json, sys; print(json.dumps({"job": "shoplake", "table": sys.argv[1]}, sort_keys=True))' "$table")"
  if [[ $groups == "$want_group" ]]; then ok "Pushgateway: one group, grouping key job=shoplake, table=<table URI>"; else not_ok "Pushgateway groups: expected $want_group, got: ${groups:-none}"; fi
  pushed_success="$(value "$tmp/pg1.txt" shoplake_last_success_timestamp_seconds job=shoplake table="$table")"
  if [[ -n $pushed_success ]] && num_le "$t3" "$pushed_success" && num_le "$pushed_success" "$((t4 + 1))"; then
    ok "Pushgateway: shoplake_last_success_timestamp_seconds is the run's ($pushed_success)"
  else
    not_ok "Pushgateway: shoplake_last_success_timestamp_seconds '$pushed_success' not within the run ($t3..$t4)"
  fi

  sleep 1
  run_ingest run4 --date "$missing_day" "${common[@]}" --pushgateway "$pg_url"
  if [[ $rc -eq 3 ]]; then ok "ingest $missing_day --pushgateway exits 3"; else not_ok "ingest $missing_day --pushgateway exits $rc, expected 3"; show_stderr run4; fi
  scrape "$pg_url/metrics" "$tmp/pg2.txt"
  expect "Pushgateway: shoplake_run_exit_code after the failed run" 3 "$tmp/pg2.txt" shoplake_run_exit_code job=shoplake table="$table"
  expect "Pushgateway: shoplake_run_success after the failed run" 0 "$tmp/pg2.txt" shoplake_run_success job=shoplake table="$table"
  expect "Pushgateway: shoplake_last_success_timestamp_seconds kept after the failed run (push-add)" "${pushed_success:-missing}" "$tmp/pg2.txt" shoplake_last_success_timestamp_seconds job=shoplake table="$table"
  expect "Pushgateway: no failed push after the failed run" 0 "$tmp/pg2.txt" push_failure_time_seconds job=shoplake table="$table"

  # 4. An unreachable Pushgateway is a warning, not a failed load; the warning
  # names the Pushgateway without the password of a URL with credentials.
  dead_port="$(free_port)" # nothing listens there
  secret=metrics-test-s3cr3t
  t5="$(date +%s)"
  run_ingest run5 --date "$day" "${common[@]}" --pushgateway "http://shoplake:$secret@127.0.0.1:$dead_port"
  t6="$(date +%s)"
  if [[ $rc -eq 0 ]]; then ok "ingest with an unreachable Pushgateway exits 0 (in $((t6 - t5)) s)"; else not_ok "ingest with an unreachable Pushgateway exits $rc, expected 0"; show_stderr run5; fi
  if grep -qi pushgateway "$tmp/run5.err"; then
    ok "stderr warns about the Pushgateway: $(grep -i -m1 pushgateway "$tmp/run5.err")"
  else
    not_ok "no Pushgateway warning on stderr with an unreachable Pushgateway"
    show_stderr run5
  fi
  if grep -q "$secret" "$tmp/run5.out" "$tmp/run5.err"; then
    not_ok "the Pushgateway URL's password appears in the output"
    note "$(grep -h "$secret" "$tmp/run5.out" "$tmp/run5.err")"
  else
    ok "the Pushgateway URL's password appears nowhere in the output"
  fi
  if [[ $((t6 - t5)) -le 60 ]]; then ok "an unreachable Pushgateway does not hang the run"; else not_ok "the run with an unreachable Pushgateway took $((t6 - t5)) s"; fi
fi

trap - ERR
echo "metrics-test: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
