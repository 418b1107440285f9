#!/usr/bin/env python3
"""The Python deltalake baseline shoplake is measured against.

Usage: baseline.py write|merge TABLE CSV [CSV...] [--date-predicate]
  write  write_deltalake of the CSV as read by pyarrow (types inferred, no cleaning)
  merge  MERGE of the CSV into TABLE the straightforward way: update when any
         column differs, insert when not matched
Several CSVs are loaded one after the other in this one process (the re-run
of a year of dates). --date-predicate adds the file's date as a literal to
the merge condition (`t.export_date = 'D'`, D from the file name), so the
merge reads only that date's files: what a careful user does once a table
holds many dates; without it the merge is the one of the earlier benches.
Prints one JSON line: the merge metrics summed over the files.
"""
import json
import os
import sys

import pyarrow.csv as pacsv
from deltalake import DeltaTable, write_deltalake

args = [a for a in sys.argv[1:] if not a.startswith("--")]
date_predicate = "--date-predicate" in sys.argv
mode, table, csvs = args[0], args[1], args[2:]
totals = {"tool": "python", "mode": mode, "files": 0, "rows": 0}
for csv in csvs:
    data = pacsv.read_csv(csv)
    totals["files"] += 1
    totals["rows"] += data.num_rows
    if mode == "write":
        write_deltalake(table, data, partition_by=["export_date"], mode="append")
        continue
    columns = [c for c in data.column_names if c not in ("id", "export_date")]
    changed = " OR ".join(f"(t.{c} IS DISTINCT FROM s.{c})" for c in columns)
    on = "t.id = s.id AND t.export_date = s.export_date"
    if date_predicate:
        date = os.path.basename(csv).split(".")[0]
        on = f"t.export_date = '{date}' AND {on}"
    metrics = (
        DeltaTable(table)
        .merge(data, on, source_alias="s", target_alias="t")
        .when_matched_update_all(predicate=changed)
        .when_not_matched_insert_all()
        .execute()
    )
    for key in ("num_target_rows_inserted", "num_target_rows_updated", "num_target_rows_copied"):
        totals[key] = totals.get(key, 0) + int(metrics.get(key, 0))
print(json.dumps(totals))
