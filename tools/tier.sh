# shellcheck shell=bash
# What the test tiers that run their own servers share (sourced by
# catalogs/test.sh and deploy/aws/test.sh): their log lines, a cached venv,
# and the binary under test copied once a build has finished writing it.
#
#   TIER=catalog-test source tools/tier.sh
#   tier_install_venv VENV REQUIREMENTS     # rebuilt when Python or the requirements change
#   tier_wait_for_binary BIN WAIT_SECS      # BIN may be mid-build: wait until it is there
#   tier_stop_groups PID...                 # servers started with setsid, stopped for good

log() { printf '[%s] %s\n' "$TIER" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

tier_install_venv() {
  local venv=$1 requirements=$2 want marker="$1/.shoplake-requirements"
  want="$(python3 --version 2>&1)
$(grep -v '^#' "$requirements")"
  if [[ -x $venv/bin/pytest && "$(cat "$marker" 2>/dev/null)" == "$want" ]]; then
    return
  fi
  log "installing the test venv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  nice -n 10 "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  printf '%s\n' "$want" >"$marker"
}

tier_wait_for_binary() {
  local bin=$1 wait_secs=$2 waited=0
  until [[ -x $bin ]]; do
    ((waited < wait_secs)) || die "no shoplake binary at $bin after ${wait_secs}s"
    ((waited % 60)) || log "waiting for $bin (being built?)"
    sleep 5
    waited=$((waited + 5))
  done
}

# tier_stop_groups PID...: ends each server's process group (each runs in a
# session of its own): SIGTERM to all, up to 10 s each to exit, then SIGKILL.
tier_stop_groups() {
  local pid
  for pid in "$@"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    for _ in $(seq 1 40); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
