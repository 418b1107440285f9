#!/usr/bin/env python3
"""The legacy pipeline as a Spark job: a day's export into the Delta table
`shopify_configuration` with Spark + Delta Lake.

It is the peer `make bench` measures shoplake against, and what the interop
test (interop/tests) uses to write to shoplake's tables from Spark. It reads
the CSV with an explicit schema (every column as text, header checked),
applies the rules of tables/shopify_configuration/transform.sql and of
PRODUCT.md as far as Spark can without rejecting lines (a bad value becomes
null instead of rejecting the line), keeps the last line of each id, and
then:

  write   replaces the date's partition (`replaceWhere export_date = D`),
          creating the table if needed
  merge   MERGE on (id, export_date = D literal): update when any column
          differs, insert when not matched (keys absent from the file stay)
  load    `write` when the date has no rows yet (or there is no table),
          else `merge`: what the daily job does
  backfill  `load` of every date from --date to --to, in one session
          (--csv is then the directory of the exports)

The columns and their kinds come from tables/shopify_configuration/table.toml.
Spark cannot compute shoplake's `_row_hash` (xxh3-128 over shoplake's own
encoding): with --row-hash-null the job writes that column as null (what
shoplake treats as "unknown"); without it the table has the 23 other columns,
as the legacy table had.

Usage:
  legacy_job.py write|merge|load --table URI --csv URI --date D [--row-hash-null]
  legacy_job.py backfill --table URI --csv DIR --date D1 --to D2
                [--master local[2]] [--driver-memory 2g]
  (jars: $SPARK_JARS, comma separated, from interop/setup.sh; S3 through
   s3a:// with $SHOPLAKE_S3A_ENDPOINT, $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY)

Prints one JSON line: {"mode": ..., "version": N, "rows": ..., "seconds_in_job": ...}.
"""
import argparse
import json
import os
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFINITION = HERE.parent / "tables" / "shopify_configuration" / "table.toml"


def definition():
    with open(DEFINITION, "rb") as f:
        return tomllib.load(f)


S3A_JARS = ("hadoop-aws-", "aws-java-sdk-bundle-", "wildfly-openssl-")


def spark_session(app="shoplake-legacy", master="local[2]", jars=None, s3=None, driver_memory=None, extra=None):
    """A local Spark session with Delta Lake (and S3A when `s3` is given:
    a dict with endpoint, access_key, secret_key)."""
    from pyspark.sql import SparkSession

    jars = jars if jars is not None else os.environ.get("SPARK_JARS", "")
    if not s3:  # the S3A jars (the AWS SDK bundle is 280 MB) only where needed
        jars = ",".join(j for j in jars.split(",") if j and not any(n in j for n in S3A_JARS))
    builder = (
        SparkSession.builder.appName(app)
        .master(master)
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "WARN")
    )
    if driver_memory:
        builder = builder.config("spark.driver.memory", driver_memory)
    if s3:
        for key, value in {
            "fs.s3a.endpoint": s3["endpoint"],
            "fs.s3a.access.key": s3["access_key"],
            "fs.s3a.secret.key": s3["secret_key"],
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": str(s3["endpoint"].startswith("https")).lower(),
            "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
            "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "fs.s3a.endpoint.region": s3.get("region", "us-east-1"),
            # Fail fast instead of retrying for minutes when the store is down.
            "fs.s3a.attempts.maximum": "3",
            "fs.s3a.retry.limit": "3",
            "fs.s3a.connection.establish.timeout": "5000",
        }.items():
            builder = builder.config(f"spark.hadoop.{key}", value)
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def s3_from_env():
    endpoint = os.environ.get("SHOPLAKE_S3A_ENDPOINT")
    if not endpoint:
        return None
    return {
        "endpoint": endpoint,
        "access_key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        "region": os.environ.get("AWS_REGION", "us-east-1"),
    }


def export_columns(defn):
    return [c for c in defn["columns"] if c["kind"] not in ("derived", "row_hash")]


def read_export(spark, csv, date, row_hash_null=False):
    """The day's valid rows as Spark sees them, in the table's column order."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    defn = definition()
    columns = export_columns(defn)
    schema = StructType([StructField(c["name"], StringType(), True) for c in columns])
    raw = (
        spark.read.option("header", "true")
        .option("enforceSchema", "false")  # the header must name the schema's columns
        .option("mode", "PERMISSIVE")
        .schema(schema)
        .csv(csv)
    )
    # File order, for "the last line of an id wins".
    raw = raw.withColumn("_order", F.monotonically_increasing_id())

    def parsed(c):
        col, kind = F.col(c["name"]), c["kind"]
        if kind == "flag":
            low = F.lower(col)
            return (
                F.when(low.isin("true", "1"), F.lit(True)).when(low.isin("false", "0"), F.lit(False))
                .otherwise(F.lit(None).cast("boolean"))
            )
        if kind == "count":
            return F.regexp_replace(col, r"\.0+$", "").cast("bigint")
        if kind == "count_list":
            return F.from_json(col, "array<bigint>")
        if kind == "file_date":
            return F.to_date(col, "yyyy-MM-dd")
        return F.when(col == "", F.lit(None)).otherwise(col)

    typed = raw.select(*[parsed(c).alias(c["name"]) for c in columns], "_order")
    typed = typed.where(F.col("application_id").isNotNull() & (F.trim(F.col("application_id")) != ""))
    typed = typed.where(F.col("id").isNotNull() & (F.col("export_date") == F.lit(date).cast("date")))
    typed = typed.withColumn("has_specific_prefix", ~F.col("index_prefix").eqNullSafe("shopify_"))
    last = Window.partitionBy("id").orderBy(F.col("_order").desc())
    typed = typed.withColumn("_n", F.row_number().over(last)).where("_n = 1").drop("_n", "_order")
    if row_hash_null:
        typed = typed.withColumn("_row_hash", F.lit(None).cast("binary"))
    names = [c["name"] for c in defn["columns"] if row_hash_null or c["kind"] != "row_hash"]
    return typed.select(*names)


def table_exists(spark, table):
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, table)


def date_has_rows(spark, table, date):
    return bool(spark.read.format("delta").load(table).where(f"export_date = DATE'{date}'").limit(1).count())


def write(spark, rows, table, date):
    (
        rows.write.format("delta")
        .mode("overwrite")
        .partitionBy("export_date")
        .option("replaceWhere", f"export_date = DATE'{date}'")
        .save(table)
    )


def merge(spark, rows, table, date):
    from delta.tables import DeltaTable

    compared = [c for c in rows.columns if c not in ("id", "export_date", "_row_hash")]
    differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in compared)
    (
        DeltaTable.forPath(spark, table).alias("t")
        .merge(rows.alias("s"), f"t.export_date = DATE'{date}' AND t.id = s.id AND t.export_date = s.export_date")
        .whenMatchedUpdate(condition=differs, set={c: f"s.`{c}`" for c in rows.columns})
        .whenNotMatchedInsertAll()
        .execute()
    )


def latest_version(spark, table):
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, table).history(1).collect()[0]["version"]


def run(spark, mode, table, csv, date, row_hash_null=False):
    rows = read_export(spark, csv, date, row_hash_null=row_hash_null)
    if mode == "load":
        mode = "merge" if table_exists(spark, table) and date_has_rows(spark, table, date) else "write"
    (write if mode == "write" else merge)(spark, rows, table, date)
    return mode, latest_version(spark, table)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["write", "merge", "load", "backfill"])
    parser.add_argument("--table", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--date", required=True)
    parser.add_argument("--to", help="last date of a backfill")
    parser.add_argument("--row-hash-null", action="store_true")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default=None)
    args = parser.parse_args()
    started = time.monotonic()
    spark = spark_session(master=args.master, s3=s3_from_env(), driver_memory=args.driver_memory)
    session_seconds = time.monotonic() - started
    if args.mode == "backfill":
        from datetime import date, timedelta

        day, last = date.fromisoformat(args.date), date.fromisoformat(args.to)
        while day <= last:
            mode, version = run(spark, "load", args.table, f"{args.csv}/{day}.csv", str(day), args.row_hash_null)
            day += timedelta(days=1)
        mode = "backfill"
    else:
        mode, version = run(spark, args.mode, args.table, args.csv, args.date, args.row_hash_null)
    print(json.dumps({
        "mode": mode,
        "version": version,
        "session_seconds": round(session_seconds, 2),
        "seconds_in_job": round(time.monotonic() - started, 2),
    }))
    spark.stop()


if __name__ == "__main__":
    sys.exit(main())
