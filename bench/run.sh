#!/usr/bin/env bash
# `make bench`: shoplake and the Python deltalake baseline on the same
# generated files, in one run; figures, ratios, commands and machine go to
# bench/RESULTS.md. Scratch data lives in $SHOPLAKE_BENCH_DIR (default
# bench/work, git-ignored). BENCH_ROWS (default 1000000) sizes the main export.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoplake/target}"
BIN="$CARGO_TARGET_DIR/debug/shoplake"
WORK="${SHOPLAKE_BENCH_DIR:-bench/work}"
ROWS="${BENCH_ROWS:-1000000}"
BIG_ROWS="${BENCH_BIG_ROWS:-5000000}"
DAY_ROWS="${BENCH_DAY_ROWS:-100000}"
VENV="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}/bench-venv"
RESULTS="$WORK/results.jsonl"
export RUST_LOG=warn

log() { echo "[bench] $*" >&2; }

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import deltalake, pyarrow" 2>/dev/null; then
  log "creating the baseline venv in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "deltalake==1.6.6" "pyarrow>=18"
fi

rm -rf "$WORK"
mkdir -p "$WORK"
: > "$RESULTS"

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

log "generating $ROWS shops for 2019-04-01..02 and a 1% corrected re-export"
"$BIN" generate --from 2019-04-01 --to 2019-04-02 --rows "$ROWS" --out "$WORK/raw" >&2
mkdir -p "$WORK/revised"
python3 bench/revise.py "$WORK/raw/2019-04-01.csv" "$WORK/revised/2019-04-01.csv" 0.01

# Each scenario starts from the state it needs: a fresh table for a first
# load, a loaded day for a re-run, the original day for a corrected one.
S="$WORK/shoplake/shopify_configuration"
SL() { echo "'$BIN' ingest --source '$WORK/$1' --table '$S' --date $2 >/dev/null"; }
measure first_load shoplake --setup "rm -rf '$WORK/shoplake'" -- \
  "$BIN" ingest --date 2019-04-01 --source "$WORK/raw" --table "$S"
commits() { ls "$S/_delta_log" | grep -c '\.json$'; }
before=$(commits)
measure identical_rerun shoplake -- "$BIN" ingest --date 2019-04-01 --source "$WORK/raw" --table "$S"
echo "{\"scenario\": \"identical_rerun\", \"tool\": \"shoplake\", \"new_versions\": $(( $(commits) - before ))}" >>"$RESULTS"
measure new_day shoplake --setup "rm -rf '$WORK/shoplake'; $(SL raw 2019-04-01)" -- \
  "$BIN" ingest --date 2019-04-02 --source "$WORK/raw" --table "$S"
measure corrected_1pct shoplake --setup "$(SL raw 2019-04-01)" -- \
  "$BIN" ingest --date 2019-04-01 --source "$WORK/revised" --table "$S"

P="$WORK/python/shopify_configuration"
PY="$VENV/bin/python"
PYW() { echo "'$PY' bench/baseline.py write '$P' '$WORK/$1/$2.csv'"; }
measure first_load python --setup "rm -rf '$WORK/python'" -- \
  "$PY" bench/baseline.py write "$P" "$WORK/raw/2019-04-01.csv"
measure identical_rerun python -- "$PY" bench/baseline.py merge "$P" "$WORK/raw/2019-04-01.csv"
measure new_day python --setup "rm -rf '$WORK/python'; $(PYW raw 2019-04-01)" -- \
  "$PY" bench/baseline.py merge "$P" "$WORK/raw/2019-04-02.csv"
measure corrected_1pct python --setup "rm -rf '$WORK/python'; $(PYW raw 2019-04-01)" -- \
  "$PY" bench/baseline.py merge "$P" "$WORK/revised/2019-04-01.csv"

log "generating $BIG_ROWS shops for 2019-06-01"
"$BIN" generate --from 2019-06-01 --to 2019-06-01 --rows "$BIG_ROWS" --seed 5 --out "$WORK/big" >&2
REPEAT=1 measure first_load_5m shoplake --setup "rm -rf '$WORK/big-table'" -- \
  "$BIN" ingest --date 2019-06-01 --source "$WORK/big" --table "$WORK/big-table"
rm -rf "$WORK/big" "$WORK/big-table"

log "30 dates of $DAY_ROWS shops: re-loading one date in a table of 1 date and of 30"
"$BIN" generate --from 2019-07-01 --to 2019-07-30 --rows "$DAY_ROWS" --seed 7 --out "$WORK/month" >&2
mkdir -p "$WORK/month-revised"
python3 bench/revise.py "$WORK/month/2019-07-01.csv" "$WORK/month-revised/2019-07-01.csv" 0.01
"$BIN" ingest --date 2019-07-01 --source "$WORK/month" --table "$WORK/one-date" >/dev/null
"$BIN" backfill --from 2019-07-01 --to 2019-07-30 --parallel 2 --source "$WORK/month" --table "$WORK/thirty-dates" >/dev/null
for table in one-date thirty-dates; do
  name=reload_in_1_date
  [ "$table" = thirty-dates ] && name=reload_in_30_dates
  measure "$name" shoplake \
    --setup "'$BIN' ingest --date 2019-07-01 --source '$WORK/month' --table '$WORK/$table' >/dev/null" -- \
    "$BIN" ingest --date 2019-07-01 --source "$WORK/month-revised" --table "$WORK/$table"
done

python3 bench/report.py "$RESULTS" "$ROWS" "$(du -m "$WORK/raw/2019-04-01.csv" | cut -f1)" > bench/RESULTS.md
log "wrote bench/RESULTS.md"
