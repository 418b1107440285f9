#!/usr/bin/env bash
# shoplake-cron.sh [YYYY-MM-DD] - load one day's Shopify configuration export with shoplake, from cron.
#
# Loads the date given as $1, or by default yesterday in UTC (today - SHOPLAKE_DATE_OFFSET_DAYS):
# the 03:00 UTC run loads the export of the day that ended three hours earlier.
#
# Configuration: optional shell assignments sourced (and exported) from $SHOPLAKE_CRON_ENV,
# default /etc/shoplake/env (a missing default file is fine; a missing file named by
# SHOPLAKE_CRON_ENV is an error). Keys, all optional:
#   SHOPLAKE_BIN=/usr/local/bin/shoplake          binary (default: shoplake on PATH)
#   SHOPLAKE_SOURCE=s3://bucket/prefix            read by shoplake itself
#   SHOPLAKE_TABLE=s3://bucket/shopify_configuration
#   AWS_REGION=eu-west-1, AWS_ENDPOINT_URL=...    standard AWS settings; credentials from the
#                                                 instance profile / ~/.aws, never in this file
#   SHOPLAKE_LOG=/var/log/shoplake/ingest.log     appended to (default; dir created)
#   SHOPLAKE_LOCK=/run/lock/shoplake-ingest.lock  flock file: one run at a time
#   SHOPLAKE_DATE_OFFSET_DAYS=1                   default date = today (UTC) - this many days
#   SHOPLAKE_INGEST_ARGS="--max-delete-ratio 0.2" extra ingest flags (split on spaces)
#   RUST_LOG=info                                 shoplake's log level
#
# Every line shoplake prints (the JSON report on stdout, logs on stderr) is appended to the log
# file prefixed with a UTC timestamp and the export date; a failure is also summarised on stderr,
# which cron mails to MAILTO.
#
# Exit status: shoplake's own (0 loaded or nothing to change, 1 internal, 2 configuration,
# 3 export not there yet, 4 data refused, 5 storage / conflicts); 2 also for a bad date argument
# or config file; 75 (EX_TEMPFAIL) when another run holds the lock: nothing was loaded.
set -euo pipefail

EX_CONFIG=2
EX_TEMPFAIL=75

die() {
  echo "shoplake-cron: $*" >&2
  exit "$EX_CONFIG"
}

env_file=${SHOPLAKE_CRON_ENV:-/etc/shoplake/env}
if [ -f "$env_file" ]; then
  set -a
  # shellcheck source=/dev/null
  . "$env_file"
  set +a
elif [ -n "${SHOPLAKE_CRON_ENV:-}" ]; then
  die "config file $SHOPLAKE_CRON_ENV not found"
fi

bin=${SHOPLAKE_BIN:-shoplake}
log_file=${SHOPLAKE_LOG:-/var/log/shoplake/ingest.log}
lock_dir=/run/lock
if ! [ -d "$lock_dir" ] || ! [ -w "$lock_dir" ]; then lock_dir=${TMPDIR:-/tmp}; fi
lock_file=${SHOPLAKE_LOCK:-$lock_dir/shoplake-ingest.lock}
offset=${SHOPLAKE_DATE_OFFSET_DAYS:-1}
read -r -a extra_args <<<"${SHOPLAKE_INGEST_ARGS:-}"

[[ $offset =~ ^[0-9]+$ ]] || die "SHOPLAKE_DATE_OFFSET_DAYS must be a number of days, not '$offset'"
if [ $# -gt 1 ]; then
  die "usage: shoplake-cron.sh [YYYY-MM-DD]"
elif [ $# -eq 1 ]; then
  if ! [[ $1 =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || [ "$(date -u -d "$1" +%F 2>/dev/null)" != "$1" ]; then
    die "not a date (YYYY-MM-DD): '$1'"
  fi
  day=$1
else
  day=$(date -u -d "today - $offset days" +%F)
fi

command -v "$bin" >/dev/null || die "shoplake binary '$bin' not found (set SHOPLAKE_BIN)"
mkdir -p "$(dirname "$log_file")"
stamp() { # prefix each line with a UTC timestamp and the export date
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$day" "$line"
  done
}
note() { echo "shoplake-cron: $*" | stamp >>"$log_file"; }

exec 9>>"$lock_file"
if ! flock -n 9; then
  note "another run holds $lock_file; not loading $day (exit $EX_TEMPFAIL)"
  echo "shoplake-cron: another run holds $lock_file; $day not loaded" >&2
  exit "$EX_TEMPFAIL"
fi

note "start: $bin ingest --date $day${extra_args[*]:+ ${extra_args[*]}} (pid $$)"
started=$SECONDS
status=(0 0)
"$bin" ingest --date "$day" "${extra_args[@]}" --format json 2>&1 | stamp >>"$log_file" ||
  status=("${PIPESTATUS[@]}")
rc=${status[0]}
[ "${status[1]}" = 0 ] || echo "shoplake-cron: could not write $log_file" >&2
note "end: exit $rc after $((SECONDS - started))s"
if [ "$rc" != 0 ]; then
  echo "shoplake-cron: ingest of $day failed with exit $rc (see $log_file)" >&2
fi
exit "$rc"
