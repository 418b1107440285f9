#!/usr/bin/env python3
"""The floe peer: floe (a Rust + Polars ingestion engine) through its Python
module, floe-python, with a config equivalent to our table as far as floe
can express it.

Usage: floe_peer.py write|append|merge TABLE WORKDIR CSV [CSV...] [--state]

The config (written to WORKDIR/floe.yml, shown by `floe_peer.py config`) is
generated from tables/shopify_configuration/table.toml:

  text -> string, flag -> boolean, count -> number (float64: floe's CSV
  reader cannot read the export's 17.0 as an integer, and with int64 those
  lines are rejected), count_list -> string (floe has no list type: the list
  is neither checked nor decoded), file_date -> date; nullable = false ->
  `nullable: false` (so a line without application_id is rejected, where
  shoplake filters it); key -> `primary_key` (checked unique: a duplicate
  is rejected, the first line kept); partition_by -> `partition_by`.
  policy.severity = reject: each bad line goes to WORKDIR/rejected as CSV.
  No derived column (has_specific_prefix): floe has no transform step.

  `source.options.header: false` with the columns in the file's order: with
  `header: true` floe 0.7.0 sniffs the header with Polars' type inference,
  which fails on the first 17.0 after the first 100 lines and rejects the
  whole file. So the header line itself comes through as one rejected line
  and the header's names are not checked.

Modes: write = `write_mode: overwrite` (a first load into a new table),
append = `append`, merge = `merge_scd1` keyed by (id, export_date): every
matched row is updated (and its file rewritten) whether it changed or not,
unmatched rows inserted, nothing deleted, and a version is committed even
when nothing changed. --state sets `incremental_mode: file`: floe records
each file it loaded (WORKDIR/state.json) and skips a file already recorded,
by its name alone (a corrected re-export under the same name is skipped too).

Several CSVs are loaded one after the other (one `floe.run` each) in this
one process. Prints one JSON line: floe's counts summed over the files.
"""
import json
import sys
import tomllib
from pathlib import Path

DEFINITION = Path(__file__).resolve().parent.parent / "tables" / "shopify_configuration" / "table.toml"
TYPES = {"text": "string", "flag": "boolean", "count": "number", "count_list": "string", "file_date": "date"}
MODES = {"write": "overwrite", "append": "append", "merge": "merge_scd1"}


def config(mode, state_path=None):
    with open(DEFINITION, "rb") as f:
        defn = tomllib.load(f)
    columns = "\n".join(
        f"        - {{name: {c['name']}, type: {TYPES[c['kind']]}, nullable: {str(c.get('nullable', True)).lower()}}}"
        for c in defn["columns"] if c["kind"] in TYPES
    )
    # (state.path is not templated by floe 0.7.0: the path itself goes in)
    incremental = f"    incremental_mode: file\n    state:\n      path: {json.dumps(state_path)}\n" if state_path else ""
    return f"""version: "0.2"
report:
  path: "{{{{work}}}}/report"
entities:
  - name: {defn['name']}
{incremental}    source:
      format: csv
      path: "{{{{csv}}}}"
      options:
        header: false
        separator: ","
      cast_mode: strict
    sink:
      write_mode: {MODES[mode]}
      accepted:
        format: delta
        path: "{{{{table}}}}"
        partition_by: ["{defn['partition_by']}"]
      rejected:
        format: csv
        path: "{{{{work}}}}/rejected"
    policy:
      severity: reject
    schema:
      primary_key: {json.dumps(defn['key'])}
      columns:
{columns}
"""


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    state = "--state" in sys.argv
    if args[0] == "config":
        print(config(args[1] if len(args) > 1 else "merge", "WORKDIR/state.json" if state else None))
        return
    import floe

    mode, table, work, csvs = args[0], args[1], Path(args[2]), args[3:]
    work.mkdir(parents=True, exist_ok=True)
    state_path = str(work.resolve() / "state.json") if state else None
    for m in {mode, "write"}:
        (work / f"floe-{m}.yml").write_text(config(m, state_path))
    totals = {"tool": "floe", "mode": MODES[mode], "files": 0}
    for csv in csvs:
        # floe appends only to a table that exists: the first file creates it.
        first = mode == "append" and not (Path(table) / "_delta_log").is_dir()
        path = work / f"floe-{'write' if first else mode}.yml"
        # Relative paths in a floe config resolve against the config's folder.
        outcome = floe.run(str(path), profile_vars={"csv": str(Path(csv).resolve()),
                                                     "table": str(Path(table).resolve()),
                                                     "work": str(work.resolve())})
        results = outcome.summary["results"]
        totals["files"] += 1
        for key in ("files_skipped", "rows_total", "accepted_total", "rejected_total"):
            totals[key] = totals.get(key, 0) + int(results.get(key) or 0)
        for report in outcome.entity_reports:
            out = report.get("accepted_output") or {}
            for key in ("inserted_count", "updated_count"):
                totals[key] = totals.get(key, 0) + int(out.get(key) or 0)
        status = outcome.summary["run"]["status"]
        # "rejected" is also the status of a run that rejected some lines; a
        # file rejected whole reads no row.
        whole_file = not results.get("files_skipped") and not results.get("rows_total")
        if status not in ("success", "rejected") or whole_file:
            print(json.dumps(totals))
            sys.exit(f"floe run on {csv}: status {status}, {results}")
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
