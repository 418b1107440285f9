#!/usr/bin/env bash
# Installs what the Spark interop test (interop/run.sh) and the Spark part of
# `make bench` need, outside the clone, once:
#
#   $SHOPLAKE_CACHE/spark-venv    Python 3.11 venv: pyspark 3.5.7, delta-spark 3.3.2, pytest,
#                                 and Python deltalake 1.6.6 + pyarrow (the other writer of
#                                 tests/test_other_writers.py; the versions bench/run.sh pins)
#   $SHOPLAKE_CACHE/spark-jars    the jars Spark gets through `spark.jars`, from Maven Central
#
# (SHOPLAKE_CACHE defaults to $HOME/.cache/shoplake.) Each has a marker file
# holding what was installed; a warm run compares it and installs nothing.
# Prints `export SPARK_PY=... SPARK_JARS=...` lines for `eval`.
#
#   interop/setup.sh            # install if needed, print the environment
#   interop/setup.sh --check    # exit 1 (silently) unless Java and a warm cache are there
set -euo pipefail

CACHE=${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}
VENV=$CACHE/spark-venv
JARS=$CACHE/spark-jars
PIP_SPEC=("pyspark==3.5.7" "delta-spark==3.3.2" "pytest==8.3.4" "deltalake==1.6.6" "pyarrow==26.0.1")
# Spark 3.5 is built against Hadoop 3.3.4: hadoop-aws must be that version,
# with the AWS SDK bundle it was built with (what --packages would resolve).
MAVEN=(
  io.delta:delta-spark_2.12:3.3.2
  io.delta:delta-storage:3.3.2
  org.antlr:antlr4-runtime:4.9.3
  org.apache.hadoop:hadoop-aws:3.3.4
  com.amazonaws:aws-java-sdk-bundle:1.12.262
  org.wildfly.openssl:wildfly-openssl:1.0.7.Final
)

log() { echo "[spark-setup] $*" >&2; }

venv_ok() { [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.shoplake-installed" 2>/dev/null)" = "${PIP_SPEC[*]}" ]; }
jars_ok() { [ "$(cat "$JARS/.shoplake-jars" 2>/dev/null)" = "${MAVEN[*]}" ]; }

if [ "${1:-}" = "--check" ]; then
  command -v java >/dev/null && venv_ok && jars_ok
  exit
fi

command -v java >/dev/null || { log "java not found: Spark needs a JDK 8/11/17"; exit 3; }
mkdir -p "$CACHE"
# The interop test and the bench may both be started on a cold machine.
exec 8>"$CACHE/spark-install.lock"
flock 8

if ! venv_ok; then
  py=${SHOPLAKE_PYTHON311:-python3.11}
  command -v "$py" >/dev/null || { log "python3.11 not found (set SHOPLAKE_PYTHON311)"; exit 3; }
  log "installing ${PIP_SPEC[*]} into $VENV"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_SPEC[@]}"
  echo "${PIP_SPEC[*]}" > "$VENV/.shoplake-installed"
fi

if ! jars_ok; then
  command -v mvn >/dev/null || { log "mvn not found: needed once to fetch the Delta jars from Maven Central"; exit 3; }
  log "fetching ${MAVEN[*]} into $JARS"
  rm -rf "$JARS.tmp"
  mkdir -p "$JARS.tmp"
  for artifact in "${MAVEN[@]}"; do
    mvn -B -q dependency:copy -Dartifact="$artifact" -DoutputDirectory="$JARS.tmp" >&2
  done
  echo "${MAVEN[*]}" > "$JARS.tmp/.shoplake-jars"
  rm -rf "$JARS"
  mv "$JARS.tmp" "$JARS"
fi

printf 'export SPARK_PY=%q\n' "$VENV/bin/python"
shopt -s nullglob  # no jar: an empty list, not the pattern
jars=("$JARS"/*.jar)
printf 'export SPARK_JARS=%q\n' "$(IFS=,; echo "${jars[*]}")"
