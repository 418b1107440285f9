#!/usr/bin/env bash
# `make integration-test`: checks the services harness
# (localstack/test-services.sh), starts LocalStack and MinIO as host
# processes (localstack/services.sh), runs every S3 scenario against both
# and the racing writers locally, and stops them again whatever happens. With Docker instead, run
# `cargo test -p shoplake-integration-tests` without SHOPLAKE_IT_* set: the
# harness starts the containers with testcontainers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoplake/target}"
services=./localstack/services.sh

# Build first, while nothing else competes for the two cores.
cargo build --workspace --bins
cargo test --workspace --test s3 --no-run

# The harness itself first, under the conditions that once broke it.
./localstack/test-services.sh
trap '"$services" stop all' EXIT
"$services" start all
eval "$("$services" env)"
export SHOPLAKE_BIN="$CARGO_TARGET_DIR/debug/shoplake"
cargo test --workspace --test s3 -- --test-threads "${SHOPLAKE_IT_THREADS:-3}"
