"""shoplake adopts the legacy pipeline's table.

The legacy Spark job wrote `shopify_configuration` with the 23 columns of
the export and its derived column, partitioned by export_date, without
`_row_hash` (and without the change data feed). shoplake takes it over: its
first ingest adds the nullable `_row_hash` column, loads the date as the
export says, and leaves the other dates alone; history shows Spark's
versions too; later loads behave as on a table shoplake created.

Without adoption the first ingest fails with "the table's schema does not
match its definition" and the tests after it fail for the same reason.
"""
import legacy_job
import pytest
from conftest import (
    ALL_COLUMNS,
    Shoplake,
    assert_same_rows,
    complete,
    correct,
    generate,
    needs,
    spark_read,
    spark_rows,
)

ROWS = 300
LEGACY_COLUMNS = [c for c in ALL_COLUMNS if c != "_row_hash"]


class State:
    pass


@pytest.fixture(scope="module")
def st(local_lake, work, shoplake_bin, spark):
    s = State()
    s.sl = local_lake.shoplake
    local = work / f"adopt-{local_lake.id}"
    generate(shoplake_bin, local / "raw", "2019-04-01", "2019-04-02", ROWS, seed=31)
    correct(local / "raw" / "2019-04-01.csv", local / "corrected" / "2019-04-01.csv")
    s.raw, s.corrected = str(local / "raw"), str(local / "corrected")
    s.table, _ = local_lake.table("shopify_configuration")
    s.ref_sl = Shoplake(shoplake_bin)
    s.ref = str(local / "reference" / "shopify_configuration")
    s.ref_sl.ingest(s.ref, s.corrected, "2019-04-01")
    s.ref_sl.ingest(s.ref, s.raw, "2019-04-02")

    # The legacy pipeline's table: versions 0, 1 (two dates) and 2 (a correction).
    legacy_job.run(spark, "write", s.table, f"{s.raw}/2019-04-01.csv", "2019-04-01")
    legacy_job.run(spark, "write", s.table, f"{s.raw}/2019-04-02.csv", "2019-04-02")
    _, s.legacy_latest = legacy_job.run(spark, "merge", s.table, f"{s.raw}/2019-04-01.csv", "2019-04-01")
    s.legacy = {v: spark_rows(spark_read(spark, s.table, versionAsOf=v)) for v in range(s.legacy_latest + 1)}
    assert list(s.legacy[s.legacy_latest][0]) == LEGACY_COLUMNS
    return s


def ref_rows(s, date):
    return complete(s.ref_sl.rows(s.ref, where=f"export_date = '{date}'"), ALL_COLUMNS)


def test_first_ingest_adopts_the_table(spark, st):
    """The take-over (see the module doc)."""
    report = st.sl.ingest(st.table, st.raw, "2019-04-02")
    assert report["status"] == "committed", report
    st.adopted = report["table_version"]
    # The take-over may take a commit or two of its own before the load
    # (adding the column, setting the table's properties): never none.
    assert st.adopted > st.legacy_latest
    history = {h["version"]: h for h in st.sl.history(st.table)}
    st.takeover = {v: history[v]["operation"] for v in range(st.legacy_latest + 1, st.adopted)}
    assert "ADD COLUMN" in st.takeover.values() or history[st.adopted]["operation"] != "MERGE", history
    schema = {f.name: f.dataType.simpleString() for f in spark_read(spark, st.table).schema.fields}
    assert schema.get("_row_hash") == "binary" and list(schema) == ALL_COLUMNS, schema
    ours = complete(st.sl.rows(st.table, where="export_date = '2019-04-02'"), ALL_COLUMNS)
    assert_same_rows(ours, ref_rows(st, "2019-04-02"), "2019-04-02 after adoption")
    # The other date is untouched: Spark's rows, with an unknown fingerprint.
    untouched = spark_rows(spark_read(spark, st.table).where("export_date = '2019-04-01'"))
    before = [dict(r, _row_hash=None) for r in st.legacy[st.legacy_latest] if r["export_date"] == "2019-04-01"]
    assert untouched == before


def test_history_shows_the_legacy_versions(st):
    needs(st, "adopted")
    history = {h["version"]: h for h in st.sl.history(st.table)}
    assert [history[v]["operation"] for v in range(st.legacy_latest + 1)] == ["WRITE", "WRITE", "MERGE"]
    assert not any(history[v].get("run_id") for v in range(st.legacy_latest + 1))
    assert history[st.adopted].get("run_id") and history[st.adopted]["export_date"] == "2019-04-02"
    assert sorted(history) == list(range(st.adopted + 1))


def test_query_as_of_a_legacy_version(st):
    for version, rows in st.legacy.items():
        ours = complete(st.sl.rows(st.table, as_of=str(version)), LEGACY_COLUMNS)
        assert_same_rows(rows, ours, f"legacy version {version}")


def test_ingest_of_a_date_spark_wrote(spark, st):
    needs(st, "adopted")
    report = st.sl.ingest(st.table, st.corrected, "2019-04-01")
    assert report["status"] == "committed", report
    ours = complete(st.sl.rows(st.table, where="export_date = '2019-04-01'"), ALL_COLUMNS)
    assert_same_rows(ours, ref_rows(st, "2019-04-01"), "2019-04-01 after loading it")
    theirs = spark_rows(spark_read(spark, st.table))
    assert_same_rows(theirs, complete(st.sl.rows(st.table), ALL_COLUMNS), "Spark reads the adopted table")


def test_identical_rerun_after_adoption_is_a_noop(st):
    needs(st, "adopted")
    version = st.sl.version(st.table)
    for date, source in (("2019-04-01", st.corrected), ("2019-04-02", st.raw)):
        report = st.sl.ingest(st.table, source, date)
        assert report["status"] == "unchanged", report
    assert st.sl.version(st.table) == version
