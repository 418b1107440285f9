#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (docs/fuzzing.md) for FUZZ_SECONDS each
# (default 60; `make fuzz-smoke` passes a few), or for FUZZ_RUNS executions
# each (a campaign: FUZZ_RUNS=10000000, no time limit). Installs what it needs,
# cached outside the clone ($SHOPLAKE_CACHE, default $HOME/.cache/shoplake):
#   a nightly toolchain   found with rustup, else installed (minimal profile)
#   cargo-fuzz            `cargo install --locked` into $SHOPLAKE_CACHE/tools
# Each target's growing corpus lives in $SHOPLAKE_CACHE/fuzz/corpus/<target>
# (seeded from fuzz/seeds/<target>, which stays small); a crash stops the
# run with exit 1 and leaves its input in $SHOPLAKE_CACHE/fuzz/artifacts:
# copy it to fuzz/regressions/<target>/ (replayed by `cargo test`) first,
# then fix. Usage: tools/fuzz.sh [--install | target...]
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
runs="${FUZZ_RUNS:-}"
if [[ -n "$runs" ]]; then seconds="${FUZZ_SECONDS:-0}"; else seconds="${FUZZ_SECONDS:-60}"; fi
cache="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}"
tools="$cache/tools"
work="$cache/fuzz"
mkdir -p "$tools/bin" "$work"
log() { printf 'fuzz: %s\n' "$*" >&2; }

exec 9>"$cache/fuzz-tools.lock"
flock 9
if ! rustup run nightly rustc --version > /dev/null 2>&1; then
  log "installing a nightly toolchain (rustup, minimal profile)"
  rustup toolchain install nightly --profile minimal
fi
if [[ "$("$tools/bin/cargo-fuzz" --version 2> /dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$tools"
fi
flock -u 9
[[ "${1:-}" == --install ]] && exit 0

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for file in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi

# Its own target directory: nightly artifacts never mix with the stable build's.
export CARGO_TARGET_DIR="$work/target"
for target in "${targets[@]}"; do
  mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
  log "$target: ${runs:+$runs runs, }${seconds}s (0: no limit)"
  # -O: optimised, with debug assertions (overflow checks) kept on. A log of
  # its own per run: a smoke beside a campaign must not write into its log.
  run_log="$work/logs/$target.$$.log"
  mkdir -p "$work/logs"
  if ! PATH="$tools/bin:$PATH" cargo +nightly fuzz run --fuzz-dir fuzz -O "$target" \
    "$work/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" ${runs:+-runs="$runs"} -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$target/" > "$run_log" 2>&1; then
    tail -n 40 "$run_log" >&2
    log "$target FAILED: the input is in $work/artifacts/$target/ (log: $run_log)"
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|stat::average_exec_per_sec)' "$run_log" | tr '\n' ' ' >&2
  echo >&2
  rm -f "$run_log"
done
