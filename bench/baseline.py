#!/usr/bin/env python3
"""The Python deltalake baseline shoplake is measured against.

Usage: baseline.py write|merge TABLE CSV
  write  write_deltalake of the CSV as read by pyarrow (types inferred, no cleaning)
  merge  MERGE of the CSV into TABLE the straightforward way: update when any
         column differs, insert when not matched
"""
import sys

import pyarrow.csv as pacsv
from deltalake import DeltaTable, write_deltalake

mode, table, csv = sys.argv[1:4]
data = pacsv.read_csv(csv)
if mode == "write":
    write_deltalake(table, data, partition_by=["export_date"], mode="append")
else:
    columns = [c for c in data.column_names if c not in ("id", "export_date")]
    changed = " OR ".join(f"(t.{c} IS DISTINCT FROM s.{c})" for c in columns)
    (
        DeltaTable(table)
        .merge(data, "t.id = s.id AND t.export_date = s.export_date", source_alias="s", target_alias="t")
        .when_matched_update_all(predicate=changed)
        .when_not_matched_insert_all()
        .execute()
    )
