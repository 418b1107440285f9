"""shoplake keeps working on a table Spark has written to.

Spark (the legacy job, interop/legacy_job.py) appends a new date and MERGEs
a corrected re-export into another date of a table shoplake created. Spark
cannot compute `_row_hash` (shoplake's xxh3-128 fingerprint), so it writes
it as null, which shoplake treats as "unknown": the next load of that date
updates those rows. Afterwards the table must equal a reference table that
shoplake alone loaded from the same files, an identical re-run must add no
version, and shoplake's history, query --as-of, changes and restore must
read Spark's versions.

Then Spark SQL (UPDATE, DELETE, MERGE) changes a date shoplake loaded, and
an identical re-run of its export must count exactly what Spark changed and
leave the date equal to the export (issue #14: UPDATE and MERGE keep the
rows' old `_row_hash`, so a shoplake that trusted every stored fingerprint
counted 0 updated and left Spark's values; the DELETE is found by key either
way).

This needs `_row_hash` to be nullable in the table shoplake creates: were it
NOT NULL, Delta (Spark) would refuse Spark's writes ("NOT NULL constraint
violated for column: _row_hash") and every test below that depends on them
would fail with that message.
"""
import legacy_job
import pytest
from conftest import (
    ALL_COLUMNS,
    Shoplake,
    assert_fingerprints_kept,
    assert_identical_rerun_is_noop,
    assert_load_counts,
    assert_same_rows,
    change_rows_shoplake,
    change_rows_spark,
    complete,
    correct,
    generate,
    needs,
    spark_read,
    spark_rows,
)

ROWS = 300
DATES = ["2019-04-01", "2019-04-02", "2019-04-03"]


class State:
    pass


@pytest.fixture(scope="module")
def st(lake, work, shoplake_bin):
    s = State()
    s.lake, s.sl = lake, lake.shoplake
    local = work / f"writes-{lake.id}"
    generate(shoplake_bin, local / "raw", DATES[0], DATES[-1], ROWS, seed=21)
    correct(local / "raw" / "2019-04-01.csv", local / "corrected" / "2019-04-01.csv")
    s.raw, s.raw_spark = lake.publish(local / "raw", "raw")
    s.corrected, s.corrected_spark = lake.publish(local / "corrected", "corrected")
    s.table, s.spark_table = lake.table("shopify_configuration")

    # The reference: the same files loaded by shoplake alone (locally).
    s.ref_sl = Shoplake(shoplake_bin)
    s.ref = str(local / "reference" / "shopify_configuration")
    s.ref_sl.ingest(s.ref, local / "corrected", "2019-04-01")
    for date in DATES[1:]:
        s.ref_sl.ingest(s.ref, local / "raw", date)

    s.sl.ingest(s.table, s.raw, "2019-04-01")
    s.sl.ingest(s.table, s.raw, "2019-04-02")
    s.before_spark = s.sl.version(s.table)
    s.hash_before = {r["id"]: r["_row_hash"] for r in s.sl.rows(s.table, where="export_date = '2019-04-01'")}
    return s


def ref_rows(s, date):
    return complete(s.ref_sl.rows(s.ref, where=f"export_date = '{date}'"), ALL_COLUMNS)


def table_rows(s, date, as_of=None):
    return complete(s.sl.rows(s.table, as_of=as_of, where=f"export_date = '{date}'"), ALL_COLUMNS)


def without_hash(rows):
    return [{k: v for k, v in r.items() if k != "_row_hash"} for r in rows]


def test_spark_appends_a_date(spark, st):
    """Needs a nullable _row_hash (see the module doc)."""
    _, version = legacy_job.run(spark, "write", st.spark_table, f"{st.raw_spark}/2019-04-03.csv", "2019-04-03",
                                row_hash_null=True)
    st.spark_append = version
    assert version == st.before_spark + 1
    theirs = spark_rows(spark_read(spark, st.spark_table).where("export_date = '2019-04-03'"))
    assert all(r["_row_hash"] is None for r in theirs)
    # Spark's reading of the export is shoplake's, except for the fingerprint.
    assert_same_rows(without_hash(theirs), without_hash(ref_rows(st, "2019-04-03")), "Spark's 2019-04-03")


def test_spark_merges_a_correction(spark, st):
    """Needs a nullable _row_hash (see the module doc)."""
    needs(st, "spark_append")
    _, version = legacy_job.run(spark, "merge", st.spark_table, f"{st.corrected_spark}/2019-04-01.csv",
                                "2019-04-01", row_hash_null=True)
    st.spark_merge = version
    assert version == st.spark_append + 1
    theirs = {r["id"]: r for r in spark_rows(spark_read(spark, st.spark_table).where("export_date = '2019-04-01'"))}
    wanted = {r["id"]: r for r in ref_rows(st, "2019-04-01")}
    # The legacy MERGE does not delete shops missing from the file: they stay.
    st.kept_by_spark = set(theirs) - set(wanted)
    assert st.kept_by_spark and st.kept_by_spark <= set(st.hash_before)
    st.nulled = set()
    for key, row in wanted.items():
        mine = theirs[key]
        assert without_hash([mine]) == without_hash([row]), key
        if mine["_row_hash"] is None:
            st.nulled.add(key)
        else:  # untouched rows keep shoplake's fingerprint
            assert mine["_row_hash"] == row["_row_hash"] == st.hash_before[key]
    assert st.nulled, "the MERGE updated nothing"
    st.spark_inserted = len(set(wanted) - set(st.hash_before))


def test_shoplake_history_lists_spark_versions(st):
    """`history` takes row counts from Delta's operationMetrics under
    delta-rs's names (num_target_rows_updated) and Spark's
    (numTargetRowsInserted/Updated/Deleted for MERGE, numOutputRows for WRITE)."""
    needs(st, "spark_append", "spark_merge")
    history = {h["version"]: h for h in st.sl.history(st.table)}
    assert history[st.spark_append]["operation"] == "WRITE"
    assert history[st.spark_merge]["operation"] == "MERGE"
    assert not history[st.spark_merge].get("run_id")
    # Delta's own metrics are what history can show for Spark's commits.
    assert history[st.spark_merge].get("rows_updated") == len(st.nulled) - st.spark_inserted, history[st.spark_merge]
    assert history[st.spark_merge].get("rows_inserted") == st.spark_inserted, history[st.spark_merge]


def test_shoplake_reads_spark_versions_as_spark_does(spark, st):
    needs(st, "spark_append", "spark_merge")
    for version in (st.spark_append, st.spark_merge):
        theirs = spark_rows(spark_read(spark, st.spark_table, versionAsOf=version))
        ours = complete(st.sl.rows(st.table, as_of=str(version)), ALL_COLUMNS)
        assert_same_rows(theirs, ours, f"Spark's version {version}")


def test_shoplake_changes_reads_spark_change_feed(spark, st):
    needs(st, "spark_append", "spark_merge")
    theirs = change_rows_spark(spark, st.spark_table, st.spark_append, st.spark_merge)
    ours = change_rows_shoplake(st.sl, st.table, st.spark_append, st.spark_merge, list(theirs[0]))
    assert theirs == ours
    assert {r["change"] for r in theirs} >= {"insert", "update_preimage", "update_postimage"}


def test_shoplake_reloads_what_spark_wrote(spark, st):
    needs(st, "spark_append", "spark_merge", "nulled")
    report = st.sl.ingest(st.table, st.raw, "2019-04-03")
    # Every row Spark wrote has an unknown fingerprint: all are updated.
    counts = (report["rows_inserted"], report["rows_updated"], report["rows_deleted"])
    assert counts == (0, len(ref_rows(st, "2019-04-03")), 0), report
    report = st.sl.ingest(st.table, st.corrected, "2019-04-01")
    assert report["rows_deleted"] == len(st.kept_by_spark), report
    assert report["rows_updated"] == len(st.nulled), report
    assert report["rows_inserted"] == 0, report
    for date in DATES:
        assert_same_rows(table_rows(st, date), ref_rows(st, date), f"{date} after re-loading")
    theirs = spark_rows(spark_read(spark, st.spark_table))
    assert_same_rows(theirs, complete(st.sl.rows(st.table), ALL_COLUMNS), "Spark reads shoplake's repair")
    st.reloaded = True


def test_identical_rerun_is_again_a_noop(st):
    needs(st, "reloaded")
    version = st.sl.version(st.table)
    for date, source in (("2019-04-01", st.corrected), ("2019-04-02", st.raw), ("2019-04-03", st.raw)):
        report = st.sl.ingest(st.table, source, date)
        assert report["status"] == "unchanged", report
        assert report["rows_inserted"] == report["rows_updated"] == report["rows_deleted"] == 0
    assert st.sl.version(st.table) == version


def test_restore_to_a_spark_version(spark, st):
    needs(st, "spark_merge", "reloaded")
    st.sl.run("restore", "--table", st.table, "--version", st.spark_merge)
    restored = spark_rows(spark_read(spark, st.spark_table))
    assert restored == spark_rows(spark_read(spark, st.spark_table, versionAsOf=st.spark_merge))
    assert_same_rows(restored, complete(st.sl.rows(st.table), ALL_COLUMNS), "restored to Spark's version")
    st.sl.ingest(st.table, st.corrected, "2019-04-01")
    st.sl.ingest(st.table, st.raw, "2019-04-03")
    for date in DATES:
        assert_same_rows(table_rows(st, date), ref_rows(st, date), f"{date} after restore and re-load")


# ---------------------------------------------------------------- Spark SQL, then the identical re-run
# Spark SQL changes 2019-04-02 (loaded by shoplake from the raw export and
# not touched by the tests above), and shoplake re-runs that very export.
# UPDATE and MERGE keep each row's old `_row_hash`: only comparing the rows
# of Spark's files by value finds them (issue #14).

SQL_DATE = "2019-04-02"


def spark_sql_update(spark, st, rows):
    """UPDATE of one row's `shop_domain`."""
    spark.sql(f"UPDATE delta.`{st.spark_table}` SET shop_domain = 'changed-by-spark.example' "
              f"WHERE export_date = DATE'{SQL_DATE}' AND id = '{rows[0]['id']}'")
    return 0, 1, 0


def spark_sql_delete(spark, st, rows):
    """DELETE of 9 rows."""
    gone = rows[::31][:9]
    ids = ", ".join(f"'{r['id']}'" for r in gone)
    spark.sql(f"DELETE FROM delta.`{st.spark_table}` WHERE export_date = DATE'{SQL_DATE}' AND id IN ({ids})")
    return len(gone), 0, 0


def spark_sql_merge(spark, st, rows):
    """MERGE giving 7 rows another `install_channel` and `nbr_metafields`."""
    changed = rows[5::40][:7]
    values = ", ".join(f"('{r['id']}', 'merged_by_spark')" for r in changed)
    spark.sql(f"""
        MERGE INTO delta.`{st.spark_table}` AS t
        USING (SELECT * FROM VALUES {values} AS v(id, channel)) AS s
        ON t.export_date = DATE'{SQL_DATE}' AND t.id = s.id
        WHEN MATCHED THEN UPDATE SET
          t.install_channel = s.channel,
          t.nbr_metafields = coalesce(t.nbr_metafields, 0) + 1000
    """)
    return 0, len(changed), 0


@pytest.mark.parametrize("spark_sql", [spark_sql_update, spark_sql_delete, spark_sql_merge],
                         ids=lambda f: f.__name__)
def test_identical_rerun_puts_back_what_spark_sql_wrote(spark, st, spark_sql):
    """Spark SQL changes the date (keeping the stored `_row_hash` of every
    row it leaves); the identical re-run counts exactly that change, leaves
    the date equal to the export (as shoplake and Spark read it), and a
    second re-run does nothing."""
    wanted = ref_rows(st, SQL_DATE)
    assert_same_rows(table_rows(st, SQL_DATE), wanted, f"{SQL_DATE} before Spark SQL (left so by an earlier test)")
    before = st.sl.version(st.table)
    inserted, updated, deleted = spark_sql(spark, st, wanted)
    assert st.sl.version(st.table) == before + 1, "Spark's change is one commit"
    theirs = spark_rows(spark_read(spark, st.spark_table).where(f"export_date = '{SQL_DATE}'"))
    assert theirs != wanted, "Spark SQL changed nothing"
    assert_fingerprints_kept(theirs, wanted, "Spark SQL")

    report = st.sl.ingest(st.table, st.raw, SQL_DATE)
    assert_load_counts(report, inserted=inserted, updated=updated, deleted=deleted)
    assert report["table_version"] == st.sl.version(st.table) == before + 2, report
    assert_same_rows(table_rows(st, SQL_DATE), wanted, f"{SQL_DATE} after {spark_sql.__name__} and the re-run",
                     names=("table", "export"))
    theirs = spark_rows(spark_read(spark, st.spark_table).where(f"export_date = '{SQL_DATE}'"))
    assert_same_rows(theirs, wanted, f"Spark reads {SQL_DATE} after the re-run", names=("Spark", "export"))

    assert_identical_rerun_is_noop(st.sl, st.table, st.raw, SQL_DATE)
