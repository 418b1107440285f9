#!/usr/bin/env python3
"""The Polars peer: what a data engineer writes with Polars today.

Usage: polars_peer.py write|merge TABLE CSV [CSV...]

Each CSV (a local path, or s3://bucket/key with the AWS_* variables of an
S3-compatible endpoint) is read by `pl.read_csv` with an explicit schema
built from tables/shopify_configuration/table.toml:

  text -> String, flag -> Boolean, count -> Float64 then Int64 after checking
  that no value has a fraction (the export writes 17.0), count_list -> String
  decoded by `str.json_decode(List(Int64))`, file_date -> Date

A value that does not parse fails the whole file (Polars has no per-line
rejects). Then the rules of transform.sql: lines without application_id are
filtered, has_specific_prefix = index_prefix IS DISTINCT FROM 'shopify_';
the last line of a duplicated id is kept. Not checked: the header's names
(`schema=` names the columns by position), that export_date is the file's
date.

  write  `DataFrame.write_delta(mode="append")`, partitioned by export_date
  merge  `DataFrame.write_delta(mode="merge")` on the literal date, id and
         export_date: `when_matched_update_all()` (every matched row is
         updated and its file rewritten, changed or not) and
         `when_not_matched_insert_all()`; no deletes

Several CSVs are loaded one after the other in this one process (a year of
dates). Prints one JSON line: rows and merge metrics summed over the files.
"""
import json
import os
import sys
import tomllib
from pathlib import Path

import polars as pl

DEFINITION = Path(__file__).resolve().parent.parent / "tables" / "shopify_configuration" / "table.toml"
DTYPES = {"text": pl.String, "flag": pl.Boolean, "count": pl.Float64, "count_list": pl.String, "file_date": pl.Date}


def storage_options():
    """object_store options for an S3-compatible endpoint (MinIO), from the environment."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    return {
        "aws_endpoint_url": endpoint,
        "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        "aws_region": os.environ.get("AWS_REGION", "us-east-1"),
        "aws_allow_http": "true",
        "aws_conditional_put": "etag",
    }


def read(csv, columns, options):
    schema = {c["name"]: DTYPES[c["kind"]] for c in columns}
    df = pl.read_csv(csv, schema=schema, storage_options=options)
    counts = [c["name"] for c in columns if c["kind"] == "count"]
    lists = [c["name"] for c in columns if c["kind"] == "count_list"]
    fractions = df.select(pl.any_horizontal((pl.col(c) != pl.col(c).floor()).any() for c in counts)).item()
    if fractions:
        sys.exit(f"{csv}: a count has a fraction")
    return (
        df.with_columns(
            *(pl.col(c).cast(pl.Int64, strict=True) for c in counts),
            *(pl.col(c).str.json_decode(pl.List(pl.Int64)) for c in lists),
        )
        .filter(pl.col("application_id").is_not_null() & (pl.col("application_id").str.strip_chars() != ""))
        .with_columns(has_specific_prefix=pl.col("index_prefix").ne_missing("shopify_"))
        .unique(subset=["id"], keep="last", maintain_order=True)
    )


def main():
    mode, table, csvs = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(DEFINITION, "rb") as f:
        columns = [c for c in tomllib.load(f)["columns"] if c["kind"] in DTYPES]
    options = storage_options()
    totals = {"tool": "polars", "mode": mode, "files": 0, "rows": 0}
    for csv in csvs:
        df = read(csv, columns, options)
        totals["files"] += 1
        totals["rows"] += df.height
        if mode == "write":
            df.write_delta(table, mode="append", storage_options=options,
                           delta_write_options={"partition_by": ["export_date"]})
            continue
        date = os.path.basename(csv).split(".")[0]
        metrics = (
            df.write_delta(
                table,
                mode="merge",
                storage_options=options,
                delta_merge_options={
                    "predicate": f"t.export_date = '{date}' AND t.id = s.id AND t.export_date = s.export_date",
                    "source_alias": "s",
                    "target_alias": "t",
                },
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        for key in ("num_target_rows_inserted", "num_target_rows_updated", "num_target_rows_copied"):
            totals[key] = totals.get(key, 0) + int(metrics.get(key, 0))
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
