"""Spark 3.5 + Delta 3.3 reads the Shopify catalog tables shoplake loads
from Shopify's own exports (issue #28): the admin CSVs (`shopify_products`:
quoted multi-line descriptions, header texts with spaces and slashes, a
product's fields filled down its variants, a derived key;
`shopify_customers`: apostrophe-prefixed ids, yes/no flags, masked and
dropped PII) and one Bulk Operations JSONL file read by two tables
(`shopify_bulk_products`, `shopify_bulk_variants`: values by JSON pointer,
lines of the other type counted apart). Locally and on MinIO: two dates
(with malformed records) and an identical re-run; every version reads the
same in Spark as in `shoplake query --as-of`, with the declared types.
"""
import pytest
from conftest import (
    TableDef,
    assert_same_rows,
    canonical_rows,
    complete,
    generate,
    spark_read,
    spark_rows,
)

CATALOG = ("shopify_products", "shopify_customers", "shopify_bulk_products", "shopify_bulk_variants")
ROWS = 300
DATES = ("2019-04-01", "2019-04-02")


@pytest.fixture(scope="module", params=CATALOG)
def catalog_def(request):
    return TableDef(request.param)


@pytest.fixture(scope="module")
def loaded(lake, catalog_def, work, shoplake_bin):
    d = catalog_def
    sl = lake.shoplake.for_table(d)
    local = work / f"catalog-{lake.id}-{d.name}"
    generate(shoplake_bin, local / "raw", DATES[0], DATES[1], ROWS, seed=21, dirty=True, defn=d)
    raw, _ = lake.publish(local / "raw", f"catalog-raw-{d.name}")
    table, spark_table = lake.table(d.name)
    reports = [sl.ingest(table, raw, date, "--max-reject-ratio", "0.5") for date in DATES]
    latest = sl.version(table)
    rerun = sl.ingest(table, raw, DATES[1], "--max-reject-ratio", "0.5")
    return {"sl": sl, "defn": d, "table": table, "spark_table": spark_table, "reports": reports, "latest": latest,
            "rerun": rerun}


def test_both_dates_loaded_with_every_record_in_one_bucket(loaded):
    buckets = ("rows_filtered", "rows_rejected", "rows_duplicate", "rows_suppressed", "rows_other_type", "rows_valid")
    for report in loaded["reports"]:
        assert report["status"] == "committed", report
        assert report["rows_valid"] > 0, report
        assert sum(report[b] for b in buckets) == report["rows_read"], report
    if loaded["defn"].toml.get("format") == "jsonl":
        assert all(r["rows_other_type"] > 0 for r in loaded["reports"]), "the other table's lines are counted apart"
    assert loaded["rerun"]["status"] == "unchanged", loaded["rerun"]
    assert loaded["sl"].version(loaded["table"]) == loaded["latest"], "the identical re-run added a version"


def test_spark_sees_the_declared_types(spark, loaded):
    df = spark_read(spark, loaded["spark_table"])
    actual = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert actual == loaded["defn"].spark_types()


def test_every_version_reads_the_same_in_spark_and_shoplake(spark, loaded):
    d, sl = loaded["defn"], loaded["sl"]
    for version in range(loaded["latest"] + 1):
        df = spark_read(spark, loaded["spark_table"], versionAsOf=version)
        theirs = spark_rows(df, order=d.order)
        rows = complete(sl.rows(loaded["table"], as_of=str(version)), [f.name for f in df.schema.fields])
        ours = canonical_rows(rows, df.schema, order=d.order)
        assert_same_rows(theirs, ours, f"{d.name} version {version}", key=d.order)
    latest = spark_rows(spark_read(spark, loaded["spark_table"]), order=d.order)
    assert len(latest) == sum(r["rows_valid"] for r in loaded["reports"])
    dropped = {c["name"] for c in d.columns if c.get("pii") == "drop"}  # written as null, by declaration
    empty = [c for c in d.all_columns if c not in dropped and all(r[c] is None for r in latest)]
    assert not empty, f"columns null in every row: {empty}"
