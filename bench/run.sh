#!/usr/bin/env bash
# `make bench`: shoplake and its peers on the same generated files, in one run:
#   python  Python deltalake (bench/baseline.py)
#   polars  Polars read_csv with an explicit schema + write_delta (bench/polars_peer.py)
#   floe    floe-python, a config equivalent to our table (bench/floe_peer.py)
#   spark   Spark 3.5 + Delta 3.3 in local[2] running the legacy pipeline (interop/legacy_job.py)
# Every figure is wall time including start-up (interpreter, JVM, Spark session:
# what a scheduler pays) and the peak RSS of the whole process tree
# (bench/measure.py). Figures, ratios, targets, commands, versions and machine
# go to bench/RESULTS.md, a chart to bench/chart.svg.
#
# Parts (BENCH_PARTS, default "sizes month year s3 memory"):
#   sizes  for each of BENCH_SIZES: first load of a day; up to BENCH_MERGE_MAX_ROWS
#          also an identical re-run, a corrected re-export (1% of lines changed)
#          and a new day into a table of one day
#   month  a new day (BENCH_DAY_ROWS) into a table of 30 dates; shoplake's re-load
#          of one date in a table of 1 and of 30 dates
#   year   BENCH_YEAR_DATES dates of BENCH_YEAR_ROWS rows loaded, then all re-run
#          identical (shoplake `backfill`; each peer its load of each date in one process)
#   s3     the identical re-run of a BENCH_S3_ROWS export that sits on MinIO
#          (localstack/services.sh), timed, then once more through a counting
#          proxy (bench/s3proxy.py) for the bytes downloaded
#   shopify shoplake alone on Shopify's own export shapes (issue #28), BENCH_SHOPIFY_ROWS records:
#          the Products export read with records = "quoted" against records = "lines" (the same
#          file, no line breaks in it), and a first load of a JSONL export against the CSV one of
#          the same rows (the built-in definitions, varied by sed into $WORK/shopify/defs-*)
#   memory shoplake alone at --memory-limit 1GiB, for each of BENCH_MEMORY_SIZES: a first
#          load and a 1%-corrected re-load, peak RSS against rows (the key indexes go
#          to disk past their share of the limit: issue #26)
#
# Settings (environment):
#   SHOPLAKE_BIN        the binary measured (default $CARGO_TARGET_DIR/debug/shoplake)
#   BENCH_SIZES         rows of the per-size exports (default "100000 1000000 5000000 10000000")
#   BENCH_MERGE_MAX_ROWS  sizes above it get the first load only (default 5000000)
#   BENCH_PEERS         peers raced against shoplake (default "python polars floe spark")
#   BENCH_SPARK=0       leave Spark out (it is also left out, with a line saying so, without java)
#   BENCH_PYTHON_CORRECTED_MAX_ROWS  Python deltalake's corrected re-export above this
#                       is not run (default 1000000: delta-rs #4422, 9.4 GB at 1M rows)
#   BENCH_DAY_ROWS      rows per day of the 30-date table (default 100000)
#   BENCH_YEAR_DATES    dates of the year re-run (default 365); BENCH_YEAR_ROWS rows each (default 100000)
#   BENCH_YEAR_PEERS    peers of the year re-run (default BENCH_PEERS)
#   BENCH_YEAR_PARALLEL shoplake backfill --parallel (default 1: every peer loads one date at a time)
#   BENCH_MEMORY_SIZES  rows of the memory part's exports (default "1000000 10000000 50000000";
#                       the 50M export is 10 GB, its corrected copy 10 GB more, deleted after)
#   BENCH_S3_ROWS       rows of the export on MinIO (default 1000000); BENCH_S3_PEERS (default "polars")
#   BENCH_REPEAT        runs per scenario up to 1M rows (default 3; the median is reported)
#   BENCH_BIG_REPEAT    runs per scenario above 1M rows (default 1)
#   BENCH_SPARK_REPEAT  runs per Spark scenario (default 1: a Spark run takes 20-300 s)
#   BENCH_MEM_LIMIT_MB  a run whose process tree passes this is killed (default 80% of RAM)
#   BENCH_TIMEOUT       a run longer than this (s) is killed (default 1800; the year: BENCH_YEAR_TIMEOUT, 3600)
#   BENCH_OUT           where RESULTS.md and chart.svg go (default bench/)
#   SHOPLAKE_BENCH_DIR  scratch data (default bench/work, git-ignored)
# The full run is long (an estimate from single runs here, quiet machine: 2 to 2.5 hours, about
# one of them Spark's year; BENCH_YEAR_PEERS="python polars floe" leaves that out) and needs
# about 12 GB free under SHOPLAKE_BENCH_DIR (the year's 7.3 GB of CSV, the 10M export's 2 GB).
# A quick run: BENCH_SIZES=20000 BENCH_SPARK=0 BENCH_DAY_ROWS=5000 BENCH_YEAR_DATES=5 \
#   BENCH_YEAR_ROWS=2000 BENCH_S3_ROWS=20000 BENCH_REPEAT=1 BENCH_OUT=bench/work/out bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The settings the caller chose, for the report's command line (the defaults are exported below).
BENCH_CALLER_SETTINGS="$(compgen -e | grep '^BENCH_' | tr '\n' ' ' || true)"
export BENCH_CALLER_SETTINGS
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoplake/target}"
BIN="${SHOPLAKE_BIN:-$CARGO_TARGET_DIR/debug/shoplake}"
WORK="${SHOPLAKE_BENCH_DIR:-bench/work}"
CACHE="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}"
VENV="$CACHE/bench-venv"
RESULTS="$WORK/results.jsonl"
OUT="${BENCH_OUT:-bench}"
PARTS=" ${BENCH_PARTS:-sizes month year s3 memory shopify} "
SIZES="${BENCH_SIZES:-100000 1000000 5000000 10000000}"
MERGE_MAX="${BENCH_MERGE_MAX_ROWS:-5000000}"
PY_CORRECTED_MAX="${BENCH_PYTHON_CORRECTED_MAX_ROWS:-1000000}"
DAY_ROWS="${BENCH_DAY_ROWS:-100000}"
YEAR_DATES="${BENCH_YEAR_DATES:-365}"
YEAR_ROWS="${BENCH_YEAR_ROWS:-100000}"
YEAR_PARALLEL="${BENCH_YEAR_PARALLEL:-1}"
S3_ROWS="${BENCH_S3_ROWS:-1000000}"
REPEAT_SMALL="${BENCH_REPEAT:-3}"
REPEAT_BIG="${BENCH_BIG_REPEAT:-1}"
TIMEOUT="${BENCH_TIMEOUT:-1800}"
YEAR_TIMEOUT="${BENCH_YEAR_TIMEOUT:-3600}"
MEM_LIMIT="${BENCH_MEM_LIMIT_MB:-$(awk '/MemTotal/ {printf "%d", $2 * 0.8 / 1024}' /proc/meminfo)}"
PEERS=()
for p in ${BENCH_PEERS:-python polars floe spark}; do
  case "$p" in
    python | polars | floe | spark) PEERS+=("$p") ;;
    shoplake) ;;
    *) echo "[bench] unknown peer '$p' (python polars floe spark)" >&2; exit 2 ;;
  esac
done
export RUST_LOG=warn
export SHOPLAKE_BIN="$BIN" BENCH_SIZES="$SIZES" BENCH_MERGE_MAX_ROWS="$MERGE_MAX" BENCH_DAY_ROWS="$DAY_ROWS" \
  BENCH_YEAR_DATES="$YEAR_DATES" BENCH_YEAR_ROWS="$YEAR_ROWS" BENCH_YEAR_PARALLEL="$YEAR_PARALLEL" \
  BENCH_S3_ROWS="$S3_ROWS" BENCH_MEM_LIMIT_MB="$MEM_LIMIT" BENCH_PARTS="$PARTS"

log() { echo "[bench] $*" >&2; }
part() { [[ "$PARTS" == *" $1 "* ]]; }

[ -x "$BIN" ] || { log "no shoplake binary at $BIN (make build, or set SHOPLAKE_BIN)"; exit 2; }
# For the report: how busy the machine was, and whether the binary changed during the run.
BENCH_LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
BENCH_BIN_MTIME="$(stat -c %Y "$BIN")"
export BENCH_LOAD_START BENCH_BIN_MTIME

# Every peer pinned, so a peer is the same program from run to run; installed
# once into $VENV (a marker file holds the pins and how long the install took).
PYARROW_VERSION=26.0.1
BENCH_PIP=("deltalake==1.6.6" "pyarrow==$PYARROW_VERSION" "matplotlib==3.9.4"
  "polars==2.1.0" "polars-runtime-32==2.1.0" "floe-python==0.7.0")
export BENCH_PIP_SPEC="${BENCH_PIP[*]}"
if [ "$(head -n1 "$VENV/.shoplake-installed" 2>/dev/null)" != "${BENCH_PIP[*]}" ] ||
  ! "$VENV/bin/python" -c "import deltalake, pyarrow, matplotlib, polars, floe" 2>/dev/null; then
  log "installing the pinned peers into $VENV"
  started=$SECONDS
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${BENCH_PIP[@]}"
  printf '%s\n%s\n' "${BENCH_PIP[*]}" "$((SECONDS - started))" >"$VENV/.shoplake-installed"
fi
PY="$VENV/bin/python"

rm -rf "$WORK"
mkdir -p "$OUT"
mkdir -p "$WORK"
: >"$RESULTS"
# note KEY=VALUE...: one JSON line of facts (a skip, a size, a check) into the results.
note() { python3 -c 'import json,sys; print(json.dumps(dict(a.split("=",1) for a in sys.argv[1:])))' "$@" >>"$RESULTS"; }
has_peer() { [[ " ${PEERS[*]} " == *" $1 "* ]]; }
drop_peer() {
  local keep=() p
  for p in "${PEERS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PEERS=("${keep[@]}")
}

# Spark: the venv and jars of interop/setup.sh (cached in $SHOPLAKE_CACHE).
if has_peer spark && [ "${BENCH_SPARK:-1}" = 0 ]; then
  log "Spark peer left out (BENCH_SPARK=0)"
  note skipped=spark "reason=BENCH_SPARK=0"
  drop_peer spark
elif has_peer spark && ! command -v java >/dev/null; then
  log "Spark peer SKIPPED: java not found (Spark needs a JDK; apt-get install openjdk-17-jre-headless)"
  note skipped=spark "reason=java not found"
  drop_peer spark
elif has_peer spark; then
  eval "$(interop/setup.sh)"
  export SPARK_LOCAL_IP=127.0.0.1
  SJ=("$SPARK_PY" interop/legacy_job.py)
  SPARK_OPTS=(--master "local[2]" --driver-memory 2g)
fi
for p in python polars floe spark; do has_peer "$p" || [ "$p" = spark ] || note skipped="$p" "reason=not in BENCH_PEERS"; done
export BENCH_TOOLS="shoplake ${PEERS[*]}"

# measure SCENARIO ROWS TOOL [--setup CMD] -- CMD...: run CMD $REPEAT times
# (after the setup command each time) and append every run's time and peak
# RSS; the report takes the median. Returns 1 if a run failed.
REPEAT=$REPEAT_SMALL
RUN_TIMEOUT=$TIMEOUT
measure() {
  local name=$1 rows=$2 tool=$3 setup=":" failed=0 repeat=$REPEAT run figures
  shift 3
  if [ "$1" = "--setup" ]; then setup=$2; shift 2; fi
  [ "$1" = "--" ] && shift
  [ "$tool" = spark ] && repeat="${BENCH_SPARK_REPEAT:-1}"
  for run in $(seq 1 "$repeat"); do
    log "$tool: $name, $rows rows ($run/$repeat)"
    bash -c "$setup" >&2
    figures=$(python3 bench/measure.py --report --limit-mb "$MEM_LIMIT" --timeout "$RUN_TIMEOUT" -- "$@")
    python3 - "$name" "$rows" "$tool" "$figures" "$*" >>"$RESULTS" <<'PY'
import json, sys
name, rows, tool, figures, command = sys.argv[1:6]
row = json.loads(figures)
row.update(scenario=name, rows=int(rows), tool=tool, command=command)
print(json.dumps(row))
PY
    if ! python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["exit"] != 0)' "$figures"; then
      log "$tool: $name FAILED: $figures"
      failed=1
      break
    fi
  done
  return $failed
}
commits() { find "$1/_delta_log" -maxdepth 1 -type f -name '*.json' 2>/dev/null | wc -l; }
# versions TOOL SCENARIO ROWS TABLE BEFORE: how many versions the scenario's runs added.
versions() { note kind=versions "tool=$1" "scenario=$2" "rows=$3" "new_versions=$(($(commits "$4") - $5))" "runs=$6"; }
# snapshot SRC DST: a table (its rejects table too) as a scenario's starting state.
snapshot() { echo "rm -rf '$2' '$2_rejects'; cp -a '$1' '$2'; if [ -d '$1_rejects' ]; then cp -a '$1_rejects' '$2_rejects'; fi"; }

# load_cmd TOOL first|merge TABLE DIR DATE: the command that loads DIR/DATE.csv
# into TABLE (first: into a new table), in CMD.
load_cmd() {
  local tool=$1 how=$2 table=$3 dir=$4 date=$5 mode=merge
  [ "$how" = first ] && mode="write"
  case "$tool" in
    shoplake) CMD=("$BIN" ingest --date "$date" --source "$dir" --table "$table" --format json) ;;
    python) CMD=("$PY" bench/baseline.py "$mode" "$table" "$dir/$date.csv") ;;
    polars) CMD=("$PY" bench/polars_peer.py "$mode" "$table" "$dir/$date.csv") ;;
    floe) CMD=("$PY" bench/floe_peer.py "$mode" "$table" "$table.floe" "$dir/$date.csv") ;;
    spark) CMD=("${SJ[@]}" load --table "$table" --csv "$dir/$date.csv" --date "$date" "${SPARK_OPTS[@]}") ;;
  esac
}
# dates FROM N: N consecutive dates from FROM, one a line.
dates() { for i in $(seq 0 $(($2 - 1))); do date -u -d "$1 + $i day" +%F; done; }

# ---------------------------------------------------------------- sizes
if part sizes; then
  for n in $SIZES; do
    D="$WORK/n$n"
    if [ "$n" -gt "$MERGE_MAX" ]; then
      log "generating $n shops for 2019-04-01 (first load only: above BENCH_MERGE_MAX_ROWS=$MERGE_MAX)"
      "$BIN" generate --from 2019-04-01 --to 2019-04-01 --rows "$n" --seed 1 --out "$D/raw" >&2
    else
      log "generating $n shops for 2019-04-01..02 and a 1% corrected re-export"
      "$BIN" generate --from 2019-04-01 --to 2019-04-02 --rows "$n" --seed 1 --out "$D/raw" >&2
      mkdir -p "$D/revised"
      python3 bench/revise.py "$D/raw/2019-04-01.csv" "$D/revised/2019-04-01.csv" 0.01
    fi
    note kind=size "rows=$n" "mb=$(du -m "$D/raw/2019-04-01.csv" | cut -f1)" "bytes=$(stat -c %s "$D/raw/2019-04-01.csv")"
    REPEAT=$REPEAT_SMALL
    [ "$n" -gt 1000000 ] && REPEAT=$REPEAT_BIG
    for tool in shoplake "${PEERS[@]}"; do
      T="$D/$tool/t"
      load_cmd "$tool" first "$T" "$D/raw" 2019-04-01
      if ! measure first_load "$n" "$tool" --setup "rm -rf '$D/$tool'" -- "${CMD[@]}"; then
        note skipped="$tool" "rows=$n" "scenario=identical_rerun corrected_1pct new_day" "reason=its first load failed"
        rm -rf "${D:?}/$tool"; continue
      fi
      if [ "$n" -gt "$MERGE_MAX" ]; then rm -rf "${D:?}/$tool"; continue; fi
      eval "$(snapshot "$T" "$D/$tool/loaded")"
      before=$(commits "$T")
      load_cmd "$tool" merge "$T" "$D/raw" 2019-04-01
      measure identical_rerun "$n" "$tool" -- "${CMD[@]}" || true
      versions "$tool" identical_rerun "$n" "$T" "$before" "$REPEAT"
      load_cmd "$tool" merge "$T" "$D/revised" 2019-04-01
      if [ "$tool" = python ] && [ "$n" -gt "$PY_CORRECTED_MAX" ]; then
        note skipped=python "rows=$n" scenario=corrected_1pct \
          "reason=above BENCH_PYTHON_CORRECTED_MAX_ROWS=$PY_CORRECTED_MAX (delta-rs #4422: 9.4 GB at 1M rows)"
      else
        measure corrected_1pct "$n" "$tool" --setup "$(snapshot "$D/$tool/loaded" "$T")" -- "${CMD[@]}" || true
      fi
      load_cmd "$tool" merge "$T" "$D/raw" 2019-04-02
      measure new_day "$n" "$tool" --setup "$(snapshot "$D/$tool/loaded" "$T")" -- "${CMD[@]}" || true
      rm -rf "${D:?}/$tool"
    done
    rm -rf "$D"
  done
fi

# ---------------------------------------------------------------- month
if part month; then
  M="$WORK/month"
  REPEAT=$REPEAT_SMALL
  log "generating 31 days of $DAY_ROWS shops (2019-07-01..31)"
  "$BIN" generate --from 2019-07-01 --to 2019-07-31 --rows "$DAY_ROWS" --seed 7 --out "$M/raw" >&2
  mkdir -p "$M/revised"
  python3 bench/revise.py "$M/raw/2019-07-01.csv" "$M/revised/2019-07-01.csv" 0.01
  mapfile -t thirty < <(dates 2019-07-01 30 | sed "s|.*|$M/raw/&.csv|")
  for tool in shoplake "${PEERS[@]}"; do
    T30="$M/$tool/thirty"
    log "$tool: 30 dates of $DAY_ROWS shops"
    case "$tool" in
      shoplake) "$BIN" backfill --from 2019-07-01 --to 2019-07-30 --parallel 2 --source "$M/raw" --table "$T30" >/dev/null ;;
      python) "$PY" bench/baseline.py write "$T30" "${thirty[@]}" >/dev/null ;;
      polars) "$PY" bench/polars_peer.py write "$T30" "${thirty[@]}" >/dev/null ;;
      floe) "$PY" bench/floe_peer.py append "$T30" "$T30.floe" "${thirty[@]}" >/dev/null ;;
      spark) "${SJ[@]}" backfill --table "$T30" --csv "$M/raw" --date 2019-07-01 --to 2019-07-30 "${SPARK_OPTS[@]}" >&2 ;;
    esac
    load_cmd "$tool" merge "$M/$tool/t" "$M/raw" 2019-07-31
    measure new_day_30 "$DAY_ROWS" "$tool" --setup "$(snapshot "$T30" "$M/$tool/t")" -- "${CMD[@]}" || true
    if [ "$tool" = shoplake ]; then
      "$BIN" ingest --date 2019-07-01 --source "$M/raw" --table "$M/one-date" >/dev/null
      for table in one-date shoplake/thirty; do
        name=reload_in_1_date
        [ "$table" = shoplake/thirty ] && name=reload_in_30_dates
        measure "$name" "$DAY_ROWS" shoplake \
          --setup "'$BIN' ingest --date 2019-07-01 --source '$M/raw' --table '$M/$table' >/dev/null" -- \
          "$BIN" ingest --date 2019-07-01 --source "$M/revised" --table "$M/$table" --format json || true
      done
    fi
    rm -rf "${M:?}/$tool"
  done
  rm -rf "$M"
fi

# ---------------------------------------------------------------- year
# Every tool loads the dates one after the other in one process (shoplake's
# backfill with --parallel $YEAR_PARALLEL), then loads them all again unchanged.
if part year; then
  Y="$WORK/year"
  REPEAT=1
  RUN_TIMEOUT=$YEAR_TIMEOUT
  first=2018-01-01
  last=$(date -u -d "$first + $((YEAR_DATES - 1)) day" +%F)
  log "generating $YEAR_DATES dates of $YEAR_ROWS shops ($first..$last)"
  "$BIN" generate --from "$first" --to "$last" --rows "$YEAR_ROWS" --seed 11 --out "$Y/raw" >&2
  note kind=year_size "rows=$YEAR_ROWS" "dates=$YEAR_DATES" "mb=$(du -sm "$Y/raw" | cut -f1)"
  mapfile -t year < <(dates "$first" "$YEAR_DATES" | sed "s|.*|$Y/raw/&.csv|")
  year_peers=()
  for p in ${BENCH_YEAR_PEERS:-${PEERS[*]}}; do
    if has_peer "$p"; then year_peers+=("$p"); fi
  done
  # floe once more with its own skip of files it loaded before (incremental_mode: file)
  if [[ " ${year_peers[*]} " == *" floe "* ]]; then year_peers+=(floe_state); fi
  for tool in shoplake "${year_peers[@]}"; do
    T="$Y/$tool/t"
    case "$tool" in
      shoplake)
        load=("$BIN" backfill --from "$first" --to "$last" --parallel "$YEAR_PARALLEL" --source "$Y/raw" --table "$T" --format json)
        rerun=("${load[@]}") ;;
      python)
        load=("$PY" bench/baseline.py write "$T" "${year[@]}")
        rerun=("$PY" bench/baseline.py merge "$T" "${year[@]}" --date-predicate) ;;
      polars)
        load=("$PY" bench/polars_peer.py write "$T" "${year[@]}")
        rerun=("$PY" bench/polars_peer.py merge "$T" "${year[@]}") ;;
      floe)
        load=("$PY" bench/floe_peer.py append "$T" "$T.floe" "${year[@]}")
        rerun=("$PY" bench/floe_peer.py merge "$T" "$T.floe" "${year[@]}") ;;
      floe_state)
        load=("$PY" bench/floe_peer.py append "$T" "$T.floe" "${year[@]}" --state)
        rerun=("$PY" bench/floe_peer.py merge "$T" "$T.floe" "${year[@]}" --state) ;;
      spark)
        load=("${SJ[@]}" backfill --table "$T" --csv "$Y/raw" --date "$first" --to "$last" "${SPARK_OPTS[@]}")
        rerun=("${load[@]}") ;;
    esac
    if measure year_load "$YEAR_ROWS" "$tool" --setup "rm -rf '$Y/$tool'" -- "${load[@]}"; then
      before=$(commits "$T")
      measure year_rerun "$YEAR_ROWS" "$tool" -- "${rerun[@]}" || true
      versions "$tool" year_rerun "$YEAR_ROWS" "$T" "$before" 1
    else
      note skipped="$tool" "rows=$YEAR_ROWS" scenario=year_rerun "reason=its load of the year failed"
    fi
    rm -rf "${Y:?}/$tool"
  done
  rm -rf "$Y"
  RUN_TIMEOUT=$TIMEOUT
fi

# ---------------------------------------------------------------- s3 (MinIO)
if part s3; then
  minio_started=""
  if ! localstack/services.sh status minio | grep -q running; then
    if localstack/services.sh start minio >&2; then minio_started=1; fi
  fi
  if localstack/services.sh status minio | grep -q running; then
    eval "$(localstack/services.sh env)"
    export AWS_ACCESS_KEY_ID="$SHOPLAKE_IT_MINIO_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SHOPLAKE_IT_MINIO_SECRET_KEY"
    export AWS_REGION=us-east-1 AWS_ENDPOINT_URL="$SHOPLAKE_IT_MINIO_ENDPOINT"
    prefix="bench-$(date -u +%Y%m%d%H%M%S)-$$"
    SRC="s3://raw/$prefix/exports"
    REPEAT=$REPEAT_SMALL
    log "generating $S3_ROWS shops for 2019-04-01 on MinIO ($SRC)"
    "$BIN" generate --from 2019-04-01 --to 2019-04-01 --rows "$S3_ROWS" --seed 1 --out "$SRC" >&2
    # counted TOOL CMD...: one more run through the counting proxy.
    counted() {
      local tool=$1 plog="$WORK/s3proxy-$1.jsonl" pid port=""
      shift
      : >"$plog"
      python3 bench/s3proxy.py "$SHOPLAKE_IT_MINIO_ENDPOINT" "$plog" "$WORK/s3proxy.port" &
      pid=$!
      for _ in $(seq 1 50); do [ -s "$WORK/s3proxy.port" ] && break; sleep 0.1; done
      port=$(cat "$WORK/s3proxy.port")
      local saved=$REPEAT
      REPEAT=1
      AWS_ENDPOINT_URL="http://127.0.0.1:$port" measure s3_identical_rerun_counted "$S3_ROWS" "$tool" -- "$@" || true
      REPEAT=$saved
      kill "$pid"
      wait "$pid" || true
      rm -f "$WORK/s3proxy.port"
      python3 - "$tool" "$S3_ROWS" "$(python3 bench/s3proxy.py sum "$plog" /raw/"$prefix"/exports/2019-04-01.csv)" \
        >>"$RESULTS" <<'PY'
import json, sys
tool, rows, totals = sys.argv[1:4]
print(json.dumps({"kind": "s3_bytes", "tool": tool, "rows": int(rows), **json.loads(totals)}))
PY
    }
    for tool in shoplake ${BENCH_S3_PEERS:-polars}; do
      case "$tool" in
        shoplake)
          first=("$BIN" ingest --date 2019-04-01 --source "$SRC" --table "s3://lake/$prefix/shoplake" --format json)
          again=("${first[@]}") ;;
        polars)
          has_peer polars || continue
          first=("$PY" bench/polars_peer.py write "s3://lake/$prefix/polars" "$SRC/2019-04-01.csv")
          again=("$PY" bench/polars_peer.py merge "s3://lake/$prefix/polars" "$SRC/2019-04-01.csv") ;;
        *) log "no S3 variant of $tool"; continue ;;
      esac
      saved=$REPEAT
      REPEAT=1
      measure s3_first_load "$S3_ROWS" "$tool" -- "${first[@]}" || { REPEAT=$saved; continue; }
      REPEAT=$saved
      measure s3_identical_rerun "$S3_ROWS" "$tool" -- "${again[@]}" || true
      counted "$tool" "${again[@]}"
    done
    "$PY" - "$SHOPLAKE_IT_MINIO_ENDPOINT" "$prefix" <<'PY' || log "could not remove s3://{raw,lake}/$prefix"
import os, sys
from pyarrow import fs
endpoint, prefix = sys.argv[1:3]
s3 = fs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key=os.environ["AWS_ACCESS_KEY_ID"],
                     secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], region="us-east-1")
for bucket in ("raw", "lake"):
    if s3.get_file_info(f"{bucket}/{prefix}").type != fs.FileType.NotFound:
        s3.delete_dir(f"{bucket}/{prefix}")
PY
    unset AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
  else
    log "S3 part SKIPPED: MinIO did not start (localstack/services.sh start minio)"
    note skipped=shoplake scenario=s3_identical_rerun "reason=MinIO did not start"
  fi
  [ -z "$minio_started" ] || localstack/services.sh stop minio >&2
fi

# ---------------------------------------------------------------- shopify
if part shopify; then
  REPEAT=$REPEAT_SMALL
  n=${BENCH_SHOPIFY_ROWS:-1000000}
  S="$WORK/shopify"
  rm -rf "$S"
  # defs NAME DIR SED...: tables/NAME copied into DIR, edited by the sed expressions.
  defs() {
    local name=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    cp -r "tables/$name" "$dir/"
    for e in "$@"; do sed -i "$e" "$dir/$name/table.toml"; done
  }
  # The Products export without line breaks (a one-word description), framed both ways.
  defs shopify_products "$S/defs-lines" 's/^records = "quoted"/records = "lines"/' 's/format = "html"/format = "word"/'
  defs shopify_products "$S/defs-quoted" 's/format = "html"/format = "word"/'
  # A product a line: JSONL (every line the table's) and its CSV twin (the same columns, headers their names).
  defs shopify_bulk_products "$S/defs-jsonl" '/^object_type = /d'
  defs shopify_bulk_products "$S/defs-csv" '/^object_type = /d' '/^format = "jsonl"/d' '/^path = /d' \
    's/^source_pattern = .*/source_pattern = "shopify\/bulk_products_{date}.csv"/'
  # Products has 1-3 variant records a product: ~n records from n/2 products.
  log "generating ~$n records of each Shopify export shape"
  "$BIN" generate --tables "$S/defs-lines" --table-name shopify_products --from 2019-04-01 --to 2019-04-01 \
    --rows $((n / 2)) --seed 1 --out "$S/raw" >&2
  for shape in jsonl csv; do
    "$BIN" generate --tables "$S/defs-$shape" --table-name shopify_bulk_products --from 2019-04-01 --to 2019-04-01 \
      --rows "$n" --seed 1 --out "$S/raw" >&2
  done
  for f in products_export_2019-04-01.csv bulk_products_2019-04-01.jsonl bulk_products_2019-04-01.csv; do
    note kind=shopify_file "file=$f" "lines=$(wc -l <"$S/raw/shopify/$f")" "mb=$(du -m "$S/raw/shopify/$f" | cut -f1)"
  done
  for shape in lines quoted; do
    measure "products_$shape" "$n" shoplake --setup "rm -rf '$S/t-$shape' '$S/t-${shape}_rejects'" -- \
      "$BIN" ingest --tables "$S/defs-$shape" --table-name shopify_products --date 2019-04-01 \
      --source "$S/raw" --table "$S/t-$shape" --format json || true
  done
  for shape in csv jsonl; do
    measure "bulk_$shape" "$n" shoplake --setup "rm -rf '$S/b-$shape' '$S/b-${shape}_rejects'" -- \
      "$BIN" ingest --tables "$S/defs-$shape" --table-name shopify_bulk_products --date 2019-04-01 \
      --source "$S/raw" --table "$S/b-$shape" --format json || true
  done
  rm -rf "$S"
fi

# ---------------------------------------------------------------- memory
if part memory; then
  REPEAT=1
  for n in ${BENCH_MEMORY_SIZES:-1000000 10000000 50000000}; do
    D="$WORK/mem$n"
    rm -rf "$D"
    log "generating $n shops for 2019-04-01 and a 1% corrected re-export"
    "$BIN" generate --from 2019-04-01 --to 2019-04-01 --rows "$n" --seed 1 --out "$D/raw" >&2
    mkdir -p "$D/revised"
    python3 bench/revise.py "$D/raw/2019-04-01.csv" "$D/revised/2019-04-01.csv" 0.01
    note kind=size "rows=$n" "mb=$(du -m "$D/raw/2019-04-01.csv" | cut -f1)" "bytes=$(stat -c %s "$D/raw/2019-04-01.csv")"
    limited=("$BIN" --memory-limit 1GiB ingest --date 2019-04-01 --table "$D/t" --format json)
    if measure memory_first_load "$n" shoplake -- "${limited[@]}" --source "$D/raw"; then
      measure memory_corrected_1pct "$n" shoplake -- "${limited[@]}" --source "$D/revised" || true
    fi
    rm -rf "$D"
  done
fi

python3 bench/report.py "$RESULTS" >"$OUT/RESULTS.md"
"$PY" bench/chart.py "$RESULTS" "$OUT/chart.svg"
log "wrote $OUT/RESULTS.md and $OUT/chart.svg (bench took $((SECONDS / 60)) min $((SECONDS % 60)) s)"
