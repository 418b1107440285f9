#!/usr/bin/env bash
# `make bench`: shoplake and its two peers on the same generated files, in one
# run: the Python deltalake baseline (bench/baseline.py) and Spark 3.5 + Delta
# 3.3 in local[2] running the legacy pipeline (interop/legacy_job.py). Every
# figure is wall time including start-up (interpreter, JVM, Spark session: what
# a scheduler pays) and the peak RSS of the whole process tree
# (bench/measure.py). Figures, ratios, goals, commands, versions and machine go
# to bench/RESULTS.md, a chart to bench/chart.svg.
#
# Scratch data lives in $SHOPLAKE_BENCH_DIR (default bench/work, git-ignored).
#   SHOPLAKE_BIN        the binary measured (default $CARGO_TARGET_DIR/debug/shoplake)
#   BENCH_ROWS          main export (default 1000000)
#   BENCH_SMALL_ROWS    small first load (default 100000)
#   BENCH_BIG_ROWS      big first load (default 5000000)
#   BENCH_DAY_ROWS      rows per day of the 30-day table (default 100000)
#   BENCH_REPEAT        runs per shoplake/Python scenario (default 3; the median is reported)
#   BENCH_SPARK_REPEAT  runs per Spark scenario (default 1: a Spark run takes 20-120 s)
#   BENCH_SPARK=0       leave Spark out (it is also left out, with a line saying so, without java)
#   BENCH_OUT           where RESULTS.md and chart.svg go (default bench/)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoplake/target}"
BIN="${SHOPLAKE_BIN:-$CARGO_TARGET_DIR/debug/shoplake}"
WORK="${SHOPLAKE_BENCH_DIR:-bench/work}"
ROWS="${BENCH_ROWS:-1000000}"
SMALL_ROWS="${BENCH_SMALL_ROWS:-100000}"
BIG_ROWS="${BENCH_BIG_ROWS:-5000000}"
DAY_ROWS="${BENCH_DAY_ROWS:-100000}"
VENV="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}/bench-venv"
RESULTS="$WORK/results.jsonl"
OUT="${BENCH_OUT:-bench}"
export RUST_LOG=warn
export BENCH_ROWS="$ROWS" BENCH_SMALL_ROWS="$SMALL_ROWS" BENCH_BIG_ROWS="$BIG_ROWS" BENCH_DAY_ROWS="$DAY_ROWS"
export SHOPLAKE_BIN="$BIN"

log() { echo "[bench] $*" >&2; }

[ -x "$BIN" ] || { log "no shoplake binary at $BIN (make build, or set SHOPLAKE_BIN)"; exit 2; }
# For the report: how busy the machine was, and whether the binary changed during the run.
BENCH_LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
BENCH_BIN_MTIME="$(stat -c %Y "$BIN")"
export BENCH_LOAD_START BENCH_BIN_MTIME
# Pinned, so the baseline is the same program from run to run.
PYARROW_VERSION=26.0.1
BASELINE_PIP=("deltalake==1.6.6" "pyarrow==$PYARROW_VERSION" "matplotlib==3.9.4")
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import deltalake, pyarrow, matplotlib
assert pyarrow.__version__ == '$PYARROW_VERSION', pyarrow.__version__" 2>/dev/null; then
  log "creating the baseline venv in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${BASELINE_PIP[@]}"
fi

rm -rf "$WORK"
mkdir -p "$WORK"
: > "$RESULTS"
note() { python3 -c 'import json,sys; print(json.dumps(dict(a.split("=",1) for a in sys.argv[1:])))' "$@" >>"$RESULTS"; }

# Spark: the venv and jars of interop/setup.sh (cached in $SHOPLAKE_CACHE).
SPARK=""
if [ "${BENCH_SPARK:-1}" = 0 ]; then
  log "Spark peer left out (BENCH_SPARK=0)"
  note skipped=spark "reason=BENCH_SPARK=0"
elif ! command -v java >/dev/null; then
  log "Spark peer SKIPPED: java not found (Spark needs a JDK; apt-get install openjdk-17-jre-headless)"
  note skipped=spark "reason=java not found"
else
  eval "$(interop/setup.sh)"
  export SPARK_LOCAL_IP=127.0.0.1
  SPARK=1
fi

# measure NAME TOOL [--setup CMD] -- CMD...: run CMD $REPEAT times (after
# the setup command each time) and append every run's time and peak RSS;
# the report takes the median.
REPEAT="${BENCH_REPEAT:-3}"
measure() {
  local name=$1 tool=$2 setup=":"; shift 2
  if [ "$1" = "--setup" ]; then setup=$2; shift 2; fi
  [ "$1" = "--" ] && shift
  for run in $(seq 1 "$REPEAT"); do
    log "$tool: $name ($run/$REPEAT)"
    bash -c "$setup" >&2
    local figures
    figures=$(python3 bench/measure.py -- "$@")
    python3 - "$name" "$tool" "$figures" "$*" >>"$RESULTS" <<'PY'
import json, sys
name, tool, figures, command = sys.argv[1:5]
row = json.loads(figures)
row.update(scenario=name, tool=tool, command=command)
print(json.dumps(row))
PY
  done
}
commits() { find "$1/_delta_log" -maxdepth 1 -type f -name '*.json' | wc -l; }
# copy SRC DST: a table (and its rejects table, if any) as a scenario's starting state.
copy() { echo "rm -rf '$2' '$2_rejects'; cp -a '$1' '$2'; if [ -d '$1_rejects' ]; then cp -a '$1_rejects' '$2_rejects'; fi"; }

log "generating $ROWS shops for 2019-04-01..02 and a 1% corrected re-export"
"$BIN" generate --from 2019-04-01 --to 2019-04-02 --rows "$ROWS" --out "$WORK/raw" >&2
mkdir -p "$WORK/revised"
python3 bench/revise.py "$WORK/raw/2019-04-01.csv" "$WORK/revised/2019-04-01.csv" 0.01
log "generating $SMALL_ROWS shops for 2019-05-01"
"$BIN" generate --from 2019-05-01 --to 2019-05-01 --rows "$SMALL_ROWS" --seed 3 --out "$WORK/small" >&2
log "generating 31 days of $DAY_ROWS shops (2019-07-01..31)"
"$BIN" generate --from 2019-07-01 --to 2019-07-31 --rows "$DAY_ROWS" --seed 7 --out "$WORK/month" >&2
mkdir -p "$WORK/month-revised"
python3 bench/revise.py "$WORK/month/2019-07-01.csv" "$WORK/month-revised/2019-07-01.csv" 0.01

# ---------------------------------------------------------------- shoplake
# Each scenario starts from the state it needs: a fresh table for a first
# load, a loaded day for a re-run, the original day for a corrected one.
S="$WORK/shoplake/shopify_configuration"
SL() { echo "'$BIN' ingest --source '$WORK/$1' --table '$S' --date $2 >/dev/null"; }
measure first_load shoplake --setup "rm -rf '$WORK/shoplake'" -- \
  "$BIN" ingest --date 2019-04-01 --source "$WORK/raw" --table "$S"
before=$(commits "$S")
measure identical_rerun shoplake -- "$BIN" ingest --date 2019-04-01 --source "$WORK/raw" --table "$S"
echo "{\"scenario\": \"identical_rerun\", \"tool\": \"shoplake\", \"new_versions\": $(( $(commits "$S") - before ))}" >>"$RESULTS"
measure new_day shoplake --setup "rm -rf '$WORK/shoplake'; $(SL raw 2019-04-01)" -- \
  "$BIN" ingest --date 2019-04-02 --source "$WORK/raw" --table "$S"
measure corrected_1pct shoplake --setup "$(SL raw 2019-04-01)" -- \
  "$BIN" ingest --date 2019-04-01 --source "$WORK/revised" --table "$S"
measure first_load_small shoplake --setup "rm -rf '$WORK/shoplake-small'" -- \
  "$BIN" ingest --date 2019-05-01 --source "$WORK/small" --table "$WORK/shoplake-small/t"

log "shoplake: 30 dates of $DAY_ROWS shops"
"$BIN" ingest --date 2019-07-01 --source "$WORK/month" --table "$WORK/one-date" >/dev/null
"$BIN" backfill --from 2019-07-01 --to 2019-07-30 --parallel 2 --source "$WORK/month" --table "$WORK/thirty-dates" >/dev/null
measure new_day_30 shoplake --setup "$(copy "$WORK/thirty-dates" "$WORK/t30-shoplake")" -- \
  "$BIN" ingest --date 2019-07-31 --source "$WORK/month" --table "$WORK/t30-shoplake"
rm -rf "$WORK/t30-shoplake" "$WORK/t30-shoplake_rejects"
for table in one-date thirty-dates; do
  name=reload_in_1_date
  [ "$table" = thirty-dates ] && name=reload_in_30_dates
  measure "$name" shoplake \
    --setup "'$BIN' ingest --date 2019-07-01 --source '$WORK/month' --table '$WORK/$table' >/dev/null" -- \
    "$BIN" ingest --date 2019-07-01 --source "$WORK/month-revised" --table "$WORK/$table"
done
rm -rf "$WORK/one-date" "$WORK/one-date_rejects" "$WORK/thirty-dates" "$WORK/thirty-dates_rejects"

# ---------------------------------------------------------------- Python deltalake
P="$WORK/python/shopify_configuration"
PY="$VENV/bin/python"
PYW() { echo "'$PY' bench/baseline.py write '$P' '$WORK/$1/$2.csv'"; }
measure first_load python --setup "rm -rf '$WORK/python'" -- \
  "$PY" bench/baseline.py write "$P" "$WORK/raw/2019-04-01.csv"
before=$(commits "$P")
measure identical_rerun python -- "$PY" bench/baseline.py merge "$P" "$WORK/raw/2019-04-01.csv"
echo "{\"scenario\": \"identical_rerun\", \"tool\": \"python\", \"new_versions\": $(( $(commits "$P") - before ))}" >>"$RESULTS"
measure new_day python --setup "rm -rf '$WORK/python'; $(PYW raw 2019-04-01)" -- \
  "$PY" bench/baseline.py merge "$P" "$WORK/raw/2019-04-02.csv"
measure corrected_1pct python --setup "rm -rf '$WORK/python'; $(PYW raw 2019-04-01)" -- \
  "$PY" bench/baseline.py merge "$P" "$WORK/revised/2019-04-01.csv"
measure first_load_small python --setup "rm -rf '$WORK/python-small'" -- \
  "$PY" bench/baseline.py write "$WORK/python-small/t" "$WORK/small/2019-05-01.csv"
log "python: 30 dates of $DAY_ROWS shops"
for day in $(seq -w 1 30); do
  "$PY" bench/baseline.py write "$WORK/python-30" "$WORK/month/2019-07-$day.csv"
done
measure new_day_30 python --setup "$(copy "$WORK/python-30" "$WORK/t30-python")" -- \
  "$PY" bench/baseline.py merge "$WORK/t30-python" "$WORK/month/2019-07-31.csv"
rm -rf "$WORK/python-30" "$WORK/t30-python" "$WORK/python-small"

# ---------------------------------------------------------------- Spark
if [ -n "$SPARK" ]; then
  K="$WORK/spark/shopify_configuration"
  SJ=("$SPARK_PY" interop/legacy_job.py)
  SPARK_OPTS=(--master "local[2]" --driver-memory 2g)
  REPEAT_ALL=$REPEAT
  REPEAT="${BENCH_SPARK_REPEAT:-1}"
  measure first_load spark --setup "rm -rf '$WORK/spark'" -- \
    "${SJ[@]}" load --table "$K" --csv "$WORK/raw/2019-04-01.csv" --date 2019-04-01 "${SPARK_OPTS[@]}"
  cp -a "$K" "$WORK/spark-0401"
  before=$(commits "$K")
  measure identical_rerun spark -- \
    "${SJ[@]}" load --table "$K" --csv "$WORK/raw/2019-04-01.csv" --date 2019-04-01 "${SPARK_OPTS[@]}"
  echo "{\"scenario\": \"identical_rerun\", \"tool\": \"spark\", \"new_versions\": $(( $(commits "$K") - before ))}" >>"$RESULTS"
  measure new_day spark --setup "$(copy "$WORK/spark-0401" "$K")" -- \
    "${SJ[@]}" load --table "$K" --csv "$WORK/raw/2019-04-02.csv" --date 2019-04-02 "${SPARK_OPTS[@]}"
  measure corrected_1pct spark --setup "$(copy "$WORK/spark-0401" "$K")" -- \
    "${SJ[@]}" load --table "$K" --csv "$WORK/revised/2019-04-01.csv" --date 2019-04-01 "${SPARK_OPTS[@]}"
  rm -rf "$WORK/spark" "$WORK/spark-0401"
  measure first_load_small spark --setup "rm -rf '$WORK/spark-small'" -- \
    "${SJ[@]}" load --table "$WORK/spark-small/t" --csv "$WORK/small/2019-05-01.csv" --date 2019-05-01 "${SPARK_OPTS[@]}"
  rm -rf "$WORK/spark-small"
  log "spark: 30 dates of $DAY_ROWS shops"
  "${SJ[@]}" backfill --table "$WORK/spark-30" --csv "$WORK/month" --date 2019-07-01 --to 2019-07-30 \
    "${SPARK_OPTS[@]}" >&2
  measure new_day_30 spark --setup "$(copy "$WORK/spark-30" "$WORK/t30-spark")" -- \
    "${SJ[@]}" load --table "$WORK/t30-spark" --csv "$WORK/month/2019-07-31.csv" --date 2019-07-31 "${SPARK_OPTS[@]}"
  rm -rf "$WORK/spark-30" "$WORK/t30-spark"
  REPEAT=$REPEAT_ALL
fi

# ---------------------------------------------------------------- the big export
log "generating $BIG_ROWS shops for 2019-06-01"
"$BIN" generate --from 2019-06-01 --to 2019-06-01 --rows "$BIG_ROWS" --seed 5 --out "$WORK/big" >&2
REPEAT=1 measure first_load_big shoplake --setup "rm -rf '$WORK/big-table'" -- \
  "$BIN" ingest --date 2019-06-01 --source "$WORK/big" --table "$WORK/big-table"
REPEAT=1 measure first_load_big python --setup "rm -rf '$WORK/big-table'" -- \
  "$PY" bench/baseline.py write "$WORK/big-table" "$WORK/big/2019-06-01.csv"
if [ -n "$SPARK" ]; then
  REPEAT=1 measure first_load_big spark --setup "rm -rf '$WORK/big-table'" -- \
    "${SJ[@]}" load --table "$WORK/big-table" --csv "$WORK/big/2019-06-01.csv" --date 2019-06-01 "${SPARK_OPTS[@]}"
fi
big_mb=$(du -m "$WORK/big/2019-06-01.csv" | cut -f1)
small_mb=$(du -m "$WORK/small/2019-05-01.csv" | cut -f1)
rm -rf "$WORK/big" "$WORK/big-table" "$WORK/big-table_rejects"

size_mb=$(du -m "$WORK/raw/2019-04-01.csv" | cut -f1)
BENCH_SMALL_MB=$small_mb BENCH_BIG_MB=$big_mb \
  python3 bench/report.py "$RESULTS" "$ROWS" "$size_mb" > "$OUT/RESULTS.md"
"$VENV/bin/python" bench/chart.py "$RESULTS" "$OUT/chart.svg"
log "wrote $OUT/RESULTS.md and $OUT/chart.svg (bench took $((SECONDS / 60)) min $((SECONDS % 60)) s)"
