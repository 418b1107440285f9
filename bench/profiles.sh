#!/usr/bin/env bash
# `make bench-profiles`: how [profile.release] was chosen. Builds the release
# binary once per candidate profile (cargo's CARGO_PROFILE_RELEASE_* variables,
# so Cargo.toml is not edited; each candidate's dependencies have their own
# artifacts, so the first build of a candidate is a cold one), then runs the
# shoplake scenarios that dominate a night (first load, identical re-run,
# corrected 1% re-export, 1M rows) with every binary, interleaved so a change
# in the machine's load hits all of them alike. Writes bench/PROFILES.md.
#
#   PROFILE_ROWS     rows of the export (default 1000000)
#   PROFILE_REPEAT   runs per scenario and binary (default 5; the median is reported)
#   PROFILE_OUT      where PROFILES.md goes (default bench/)
#   PROFILE_REUSE=1  race the binaries of the previous run again (no builds;
#                    its build times are kept)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoplake/target}"
ROWS="${PROFILE_ROWS:-1000000}"
REPEAT="${PROFILE_REPEAT:-5}"
OUT="${PROFILE_OUT:-bench}"
WORK="${SHOPLAKE_BENCH_DIR:-bench/work}/profiles"
export RUST_LOG=warn
log() { echo "[profiles] $*" >&2; }

# name|environment for cargo (space separated VAR=value). The first is
# Cargo.toml's own [profile.release], what `make release` ships, with nothing
# overridden (an explicit value, even cargo's default, is another build); the
# others override it.
candidates=(
  "Cargo.toml's [profile.release] (thin LTO, 1 codegen unit)|"
  "cargo's defaults (thin-local LTO, 16 codegen units)|CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16"
)

results="$WORK/results.jsonl"
if [ "${PROFILE_REUSE:-0}" = 1 ] && [ -f "$results" ]; then
  log "reusing the binaries and build times in $WORK"
  grep build_seconds "$results" >"$results.builds"
  mv "$results.builds" "$results"
  rm -rf "$WORK/raw" "$WORK/revised" "$WORK"/t[0-9]*
else
  rm -rf "$WORK"
  mkdir -p "$WORK/bin"
  : >"$results"
  for i in "${!candidates[@]}"; do
    IFS='|' read -r name vars <<<"${candidates[$i]}"
    log "building: $name"
    start=$SECONDS
    # shellcheck disable=SC2086 # $vars is a list of VAR=value words on purpose
    env $vars cargo build --release --locked --bin shoplake >&2
    seconds=$((SECONDS - start))
    cp "$CARGO_TARGET_DIR/release/shoplake" "$WORK/bin/$i"
    python3 -c 'import json,sys,os; print(json.dumps({"candidate": int(sys.argv[1]), "name": sys.argv[2], "vars": sys.argv[3], "build_seconds": int(sys.argv[4]), "binary_mb": round(os.path.getsize(sys.argv[5]) / 1e6, 1)}))' \
      "$i" "$name" "$vars" "$seconds" "$WORK/bin/$i" >>"$results"
  done
  # Leave the shipped profile's binary where `make bench` and `make release` expect it.
  cargo build --release --locked --bin shoplake >&2
fi

BIN="$WORK/bin/0"
log "generating $ROWS shops and a 1% corrected re-export"
"$BIN" generate --from 2019-04-01 --to 2019-04-01 --rows "$ROWS" --out "$WORK/raw" >&2
mkdir -p "$WORK/revised"
python3 bench/revise.py "$WORK/raw/2019-04-01.csv" "$WORK/revised/2019-04-01.csv" 0.01

run() { # CANDIDATE SCENARIO SETUP -- CMD...
  local i=$1 scenario=$2 setup=$3; shift 4
  bash -c "$setup" >&2
  python3 - "$i" "$scenario" "$(python3 bench/measure.py -- "$@")" >>"$results" <<'PY'
import json, sys
row = json.loads(sys.argv[3])
row.update(candidate=int(sys.argv[1]), scenario=sys.argv[2])
print(json.dumps(row))
PY
}
for rep in $(seq 1 "$REPEAT"); do
  for i in "${!candidates[@]}"; do
    b="$WORK/bin/$i" t="$WORK/t$i/shopify_configuration"
    log "run $rep/$REPEAT, candidate $i"
    run "$i" first_load "rm -rf '$WORK/t$i'" -- "$b" ingest --date 2019-04-01 --source "$WORK/raw" --table "$t"
    run "$i" identical_rerun ":" -- "$b" ingest --date 2019-04-01 --source "$WORK/raw" --table "$t"
    run "$i" corrected_1pct ":" -- "$b" ingest --date 2019-04-01 --source "$WORK/revised" --table "$t"
    # Back to the original day for the next round's re-run.
    "$b" ingest --date 2019-04-01 --source "$WORK/raw" --table "$t" >/dev/null
  done
done

python3 - "$results" "$ROWS" "$REPEAT" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/PROFILES.md" <<'PY'
import json, statistics, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
builds = [r for r in rows if "build_seconds" in r]
runs = [r for r in rows if "scenario" in r]
scenarios = ["first_load", "identical_rerun", "corrected_1pct"]
labels = {"first_load": "first load", "identical_rerun": "identical re-run", "corrected_1pct": "corrected re-export, 1%"}
def median(i, s, key):
    return statistics.median(r[key] for r in runs if r["candidate"] == i and r["scenario"] == s)
print("# Release profile candidates\n")
print(f"Measured by `make bench-profiles` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: "
      f"{int(sys.argv[2]):,} rows, {sys.argv[3]} runs per scenario and binary, interleaved; medians, wall time / peak RSS. "
      f"Load average at the end: {sys.argv[4]} (2 cores). Build time is that of the run (cold for a candidate "
      "whose dependencies were not built before in this target directory).\n")
print("| profile | build | binary | " + " | ".join(labels[s] for s in scenarios) + " |")
print("| --- | --- | --- | " + " | ".join("---" for _ in scenarios) + " |")
for b in builds:
    i = b["candidate"]
    cells = [f'{median(i, s, "seconds"):.2f} s / {median(i, s, "peak_rss_mb"):.0f} MB' for s in scenarios]
    print(f'| {b["name"]} | {b["build_seconds"] // 60} min {b["build_seconds"] % 60} s | {b["binary_mb"]} MB | ' + " | ".join(cells) + " |")
print()
base = builds[0]["candidate"]
for b in builds[1:]:
    i = b["candidate"]
    ratios = ", ".join(f'{labels[s]} {median(i, s, "seconds") / median(base, s, "seconds"):.2f}x' for s in scenarios)
    print(f'- {b["name"]} against the shipped profile: {ratios} (time, lower is faster).')
print("\nCargo variables of each candidate:\n")
for b in builds:
    print(f'- {b["name"]}: `{b["vars"] or "(none)"}`')
PY
log "wrote $OUT/PROFILES.md"
