# shellcheck shell=bash
# What the test tiers that run their own servers share (sourced by
# catalogs/test.sh and deploy/aws/test.sh): their log lines, a cached venv,
# and the binary under test copied once a build has finished writing it.
#
#   TIER=catalog-test source tools/tier.sh
#   tier_install_venv VENV REQUIREMENTS     # rebuilt when Python or the requirements change
#   tier_wait_for_binary BIN WAIT_SECS      # BIN may be mid-build: wait until it is there

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
