#!/usr/bin/env bash
# shoplake-cron.sh [YYYY-MM-DD] - load one day's export of one shoplake table, or of every table,
# from cron.
#
# Which table: SHOPLAKE_TABLE_NAME (set on the crontab line, else in the config file), a table
# definition's name (`shoplake tables`), or `all` for every table (`shoplake ingest --all-tables`: each table its own
# commit, one JSON report with a `tables` array, the most severe exit code). Default:
# shopify_configuration, so a crontab line without it keeps doing what it always did.
#
# Loads the date given as $1, or by default yesterday in UTC (today - SHOPLAKE_DATE_OFFSET_DAYS):
# the 03:00 UTC run loads the export of the day that ended three hours earlier.
#
# Configuration: optional shell assignments sourced (and exported) from $SHOPLAKE_CRON_ENV,
# default /etc/shoplake/env (a missing default file is fine; a missing file named by
# SHOPLAKE_CRON_ENV is an error). Keys, all optional:
#   SHOPLAKE_BIN=/usr/local/bin/shoplake          binary (default: shoplake on PATH)
#   SHOPLAKE_SOURCE=s3://bucket/prefix            read by shoplake itself (each table's source
#                                                 pattern is under it)
#   SHOPLAKE_LAKE=s3://bucket/lake                where the tables live (<lake>/<table_path>);
#                                                 required for a table other than
#                                                 shopify_configuration and for `all`
#   SHOPLAKE_TABLE=s3://bucket/shopify_configuration   shopify_configuration's location only
#                                                 (older configs); with another table or `all` it
#                                                 must be <SHOPLAKE_LAKE>/shopify_configuration
#                                                 or absent (never one location for all tables)
#   SHOPLAKE_TABLES=/opt/shoplake/tables          table definitions (default: built into shoplake)
#   AWS_REGION=eu-west-1, AWS_ENDPOINT_URL=...    standard AWS settings; credentials from the
#                                                 instance profile / ~/.aws, never in this file
#   SHOPLAKE_LOG=/var/log/shoplake/ingest-{table}.log   appended to (dir created); {table} is the
#                       table name or `all`. Default: /var/log/shoplake/ingest.log for
#                       shopify_configuration (as before), ingest-<table>.log for the others
#   SHOPLAKE_LOCK=/run/lock/shoplake-ingest-{table}.lock   flock file of a table: one run at a
#                       time per table; `all` takes the lock of every table it loads. Default:
#                       shoplake-ingest.lock for shopify_configuration, shoplake-ingest-<table>.lock
#                       for the others, in /run/lock (or $TMPDIR when not writable)
#   SHOPLAKE_DATE_OFFSET_DAYS=1                   default date = today (UTC) - this many days
#   SHOPLAKE_INGEST_ARGS="--max-delete-ratio 0.2" extra ingest flags (split on spaces)
#   RUST_LOG=info                                 shoplake's log level
#
# Every line shoplake prints (the JSON report on stdout, logs on stderr) is appended to the log
# file prefixed with a UTC timestamp and the export date; a failure is also summarised on stderr,
# which cron mails to MAILTO.
#
# Exit status: shoplake's own (0 loaded or nothing to change, 1 internal, 2 configuration,
# 3 export not there yet, 4 data refused, 5 storage / conflicts; for `all` the most severe);
# 2 also for a bad date argument, table name or config file; 75 (EX_TEMPFAIL) when another run
# holds a lock: nothing was loaded.
set -euo pipefail

EX_CONFIG=2
EX_TEMPFAIL=75
DEFAULT_TABLE=shopify_configuration

die() {
  echo "shoplake-cron: $*" >&2
  exit "$EX_CONFIG"
}

# The crontab line's SHOPLAKE_TABLE_NAME wins over the (shared) config file's.
table_from_crontab=${SHOPLAKE_TABLE_NAME:-}
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
table=${table_from_crontab:-${SHOPLAKE_TABLE_NAME:-$DEFAULT_TABLE}}
lock_dir=/run/lock
if ! [ -d "$lock_dir" ] || ! [ -w "$lock_dir" ]; then lock_dir=${TMPDIR:-/tmp}; fi
offset=${SHOPLAKE_DATE_OFFSET_DAYS:-1}
read -r -a extra_args <<<"${SHOPLAKE_INGEST_ARGS:-}"

# per_table PATTERN NAME: PATTERN with {table} replaced by NAME
per_table() { echo "${1//'{table}'/$2}"; }
# lock_file NAME: the lock of table NAME (or of `all` when SHOPLAKE_LOCK has no {table})
lock_file() {
  if [ -n "${SHOPLAKE_LOCK:-}" ]; then
    per_table "$SHOPLAKE_LOCK" "$1"
  elif [ "$1" = "$DEFAULT_TABLE" ]; then
    echo "$lock_dir/shoplake-ingest.lock"
  else
    echo "$lock_dir/shoplake-ingest-$1.lock"
  fi
}
if [ -n "${SHOPLAKE_LOG:-}" ]; then
  log_file=$(per_table "$SHOPLAKE_LOG" "$table")
elif [ "$table" = "$DEFAULT_TABLE" ]; then
  log_file=/var/log/shoplake/ingest.log
else
  log_file=/var/log/shoplake/ingest-$table.log
fi

[[ $offset =~ ^[0-9]+$ ]] || die "SHOPLAKE_DATE_OFFSET_DAYS must be a number of days, not '$offset'"
[[ $table =~ ^[a-z][a-z0-9_]*$ ]] || die "SHOPLAKE_TABLE_NAME must be a table name or all, not '$table'"
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

# SHOPLAKE_TABLE / SHOPLAKE_REJECTS_TABLE name one table: never let them point another table's
# load (or every table's) at shopify_configuration's location.
if [ "$table" != "$DEFAULT_TABLE" ]; then
  [ -n "${SHOPLAKE_LAKE:-}" ] ||
    die "SHOPLAKE_LAKE is not set: $table's table lives at <SHOPLAKE_LAKE>/<table_path>"
  [ -z "${SHOPLAKE_REJECTS_TABLE:-}" ] || die "SHOPLAKE_REJECTS_TABLE names one table; remove it to load $table"
  if [ -n "${SHOPLAKE_TABLE:-}" ]; then
    [ "${SHOPLAKE_TABLE%/}" = "${SHOPLAKE_LAKE%/}/$DEFAULT_TABLE" ] ||
      die "SHOPLAKE_TABLE=$SHOPLAKE_TABLE is not <SHOPLAKE_LAKE>/$DEFAULT_TABLE: it names one table; remove it to load $table"
    unset SHOPLAKE_TABLE
  fi
fi
# The tables this run loads: one, or every defined table for `all`.
if [ "$table" = all ]; then
  listing=$("$bin" tables --format json 2>&1) || die "shoplake tables failed: $listing"
  mapfile -t tables < <(grep -o '"name": *"[a-z0-9_]*"' <<<"$listing" | cut -d'"' -f4)
  [ "${#tables[@]}" -gt 0 ] || die "shoplake tables lists no table"
  table_args=(--all-tables)
else
  tables=("$table")
  table_args=(--table-name "$table")
fi

# What the messages call this run: the date (as always) for shopify_configuration.
what=$day
[ "$table" = "$DEFAULT_TABLE" ] || what="$table $day"

mkdir -p "$(dirname "$log_file")"
stamp() { # prefix each line with a UTC timestamp and the export date
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$day" "$line"
  done
}
note() { echo "shoplake-cron: $*" | stamp >>"$log_file"; }

# One lock per table (the same file twice when SHOPLAKE_LOCK has no {table}: taken once).
declare -A held=()
for t in "${tables[@]}"; do
  lock=$(lock_file "$t")
  [ -z "${held[$lock]:-}" ] || continue
  exec {fd}>>"$lock"
  if ! flock -n "$fd"; then
    note "another run holds $lock; not loading $what (exit $EX_TEMPFAIL)"
    echo "shoplake-cron: another run holds $lock; $what not loaded" >&2
    exit "$EX_TEMPFAIL"
  fi
  held[$lock]=$fd
done

note "start: $bin ingest --date $day ${table_args[*]}${extra_args[*]:+ ${extra_args[*]}} (pid $$)"
started=$SECONDS
status=(0 0)
"$bin" ingest --date "$day" "${table_args[@]}" "${extra_args[@]}" --format json 2>&1 | stamp >>"$log_file" ||
  status=("${PIPESTATUS[@]}")
rc=${status[0]}
[ "${status[1]}" = 0 ] || echo "shoplake-cron: could not write $log_file" >&2
note "end: exit $rc after $((SECONDS - started))s"
if [ "$rc" != 0 ]; then
  echo "shoplake-cron: ingest of $what failed with exit $rc (see $log_file)" >&2
fi
exit "$rc"
