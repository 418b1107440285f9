"""Spark 3.5 + Delta 3.3 reads a table written by shoplake: every version,
by version and by time, its change data feed and its history, the same as
shoplake's own `query --as-of`, `changes` and `history` report them.

Each built-in definition (shopify_configuration; shopify_usage_daily with
its decimal(12,2), double, timestamp, array<string>, a date from the file
name and a derived decimal(12,4)) goes, locally and on MinIO through s3a://,
through what a production table sees: several dates (one with a malformed
line), a corrected re-load, a restore, the correction loaded again, a new
date, `maintain --optimize --checkpoint`, and an identical re-run. Values are
compared exactly: decimals at their scale, timestamps as UTC instants. Each
re-load of a date that has rows is one MERGE commit that rewrites the date's
files and writes change-data files: Spark's change data feed of it is exactly
the rows that changed.
"""
import json
import time
from collections import Counter
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
from conftest import (
    assert_same_rows,
    canonical_rows,
    change_rows_shoplake,
    change_rows_spark,
    commit_actions,
    complete,
    correct,
    generate,
    hadoop_list,
    spark_read,
    spark_rows,
)
from deltalake import DeltaTable

ROWS = 400
# One date larger than a read batch (32Ki lines): two parallel writers leave
# it in two files, which `maintain --optimize` then compacts. (A re-load
# writes a date's rows afresh, so it leaves a small date in one file.)
BIG_DATE, BIG_ROWS = "2019-04-04", 34_000


class Built:
    """The table and what was done to it, version by version."""

    def __init__(self):
        self.steps = {}  # version -> what made it
        self.reloads = {}  # version -> (date, ingest report) of a re-load of a date that has rows


@pytest.fixture(scope="module")
def built(lake, table_def, work, shoplake_bin):
    d = table_def
    sl = lake.shoplake.for_table(d)
    local = work / f"exports-{lake.id}-{d.name}"
    generate(shoplake_bin, local / "raw", "2019-04-01", "2019-04-03", ROWS, seed=11, defn=d)
    generate(shoplake_bin, local / "big", BIG_DATE, BIG_DATE, BIG_ROWS, seed=12, defn=d)
    # Seed 13: 1 malformed line of 401 for both tables (some seeds give none).
    generate(shoplake_bin, local / "dirty", "2019-04-02", "2019-04-02", ROWS, seed=13, dirty=True, defn=d)
    correct(d.export(local / "raw", "2019-04-01"), d.export(local / "corrected", "2019-04-01"), defn=d)
    # Only new keys: the re-load's change feed is exactly those inserts.
    correct(d.export(local / "raw", "2019-04-03"), d.export(local / "more", "2019-04-03"),
            change_every=10**9, drop_every=10**9, add=5, defn=d)
    raw, _ = lake.publish(local / "raw", f"raw-{d.name}")
    dirty, _ = lake.publish(local / "dirty", f"dirty-{d.name}")
    corrected, _ = lake.publish(local / "corrected", f"corrected-{d.name}")
    more, _ = lake.publish(local / "more", f"more-{d.name}")
    big, _ = lake.publish(local / "big", f"big-{d.name}")
    table, spark_table = lake.table(d.name)

    b = Built()
    b.table, b.spark_table, b.lake, b.defn, b.sl = table, spark_table, lake, d, sl

    def step(what, fn):
        before = sl.version(table) if b.steps else -1
        result = fn()
        after = sl.version(table)
        wanted = 1 if b.steps else 2  # the first load creates the table (version 0) too
        assert after == before + wanted, f"{what} added {after - before} versions, not {wanted}"
        for v in range(before + 1, after + 1):
            b.steps[v] = what
        # Commits at least a second apart: time travel by time is then
        # unambiguous, whatever the store's time resolution.
        time.sleep(1.1)
        return result

    step("load 2019-04-01", lambda: sl.ingest(table, raw, "2019-04-01"))
    b.dirty = step("load 2019-04-02 (dirty)", lambda: sl.ingest(table, dirty, "2019-04-02"))
    step("load 2019-04-03", lambda: sl.ingest(table, raw, "2019-04-03"))
    b.before_correction = sl.version(table)
    b.correction = step("corrected 2019-04-01", lambda: sl.ingest(table, corrected, "2019-04-01"))
    b.correction_version = sl.version(table)
    b.reloads[b.correction_version] = ("2019-04-01", b.correction)
    step("restore", lambda: sl.run("restore", "--table", table, "--version", b.before_correction))
    b.restore_version = sl.version(table)
    again = step("corrected 2019-04-01 again", lambda: sl.ingest(table, corrected, "2019-04-01"))
    b.reloads[sl.version(table)] = ("2019-04-01", again)
    step(f"load {BIG_DATE}", lambda: sl.ingest(table, big, BIG_DATE))
    b.more = step("new shops in 2019-04-03", lambda: sl.ingest(table, more, "2019-04-03"))
    b.reloads[sl.version(table)] = ("2019-04-03", b.more)
    b.before_maintain = sl.version(table)
    step("optimize + checkpoint", lambda: sl.run("maintain", "--table", table, "--optimize", "--checkpoint"))
    b.optimize_version = sl.version(table)
    b.rerun = sl.ingest(table, more, "2019-04-03")
    b.latest = sl.version(table)
    b.history = {h["version"]: h for h in sl.history(table)}
    return b


def test_the_table_went_through_every_step(built):
    assert built.dirty["rows_rejected"] >= 1, built.dirty
    c = built.correction
    assert (c["rows_updated"], c["rows_deleted"], c["rows_inserted"]) != (0, 0, 0), c
    assert built.rerun["rows_inserted"] == built.rerun["rows_updated"] == built.rerun["rows_deleted"] == 0
    assert max(built.steps) == built.latest, "the identical re-run added a version"
    assert built.history[built.restore_version]["operation"] == "RESTORE"
    assert (built.more["rows_inserted"], built.more["rows_updated"], built.more["rows_deleted"]) == (5, 0, 0)
    assert built.history[built.optimize_version]["operation"] == "OPTIMIZE"


def test_spark_sees_the_schema_with_its_types(spark, built):
    df = spark_read(spark, built.spark_table)
    actual = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert actual == built.defn.spark_types()
    assert [f.name for f in df.schema.fields] == built.defn.all_columns
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{built.spark_table}`").collect()[0]
    assert list(detail["partitionColumns"]) == [built.defn.partition]


def spark_and_shoplake(spark, built, **as_of):
    """The table as Spark reads it with `as_of` (versionAsOf= or
    timestampAsOf=) and as `shoplake query --as-of` reads it at `ours`."""
    ours = as_of.pop("ours")
    df = spark_read(spark, built.spark_table, **as_of)
    order = built.defn.order
    theirs = spark_rows(df, order=order)
    rows = complete(built.sl.rows(built.table, as_of=ours), [f.name for f in df.schema.fields])
    return theirs, canonical_rows(rows, df.schema, order=order)


def test_every_version_reads_the_same_in_spark_and_shoplake(spark, built):
    contents = {}
    for version in range(built.latest + 1):
        theirs, ours = spark_and_shoplake(spark, built, versionAsOf=version, ours=str(version))
        assert_same_rows(theirs, ours, f"version {version} ({built.steps.get(version, 'create')})",
                         key=built.defn.order)
        contents[version] = theirs
    latest = spark_rows(spark_read(spark, built.spark_table), order=built.defn.order)
    assert latest == contents[built.latest]
    # The comparisons above are not between two empty tables, and the steps did what they say.
    assert len(contents[built.latest]) > 3 * ROWS * 0.9
    assert contents[built.correction_version] != contents[built.before_correction]
    assert contents[built.restore_version] == contents[built.before_correction]
    assert contents[built.latest] == contents[built.before_maintain]
    assert all(r[built.defn.row_hash] and len(r[built.defn.row_hash]) == 32 for r in contents[built.latest])
    # Every column has values somewhere (nothing compared only as null).
    empty = [c for c in built.defn.all_columns if all(r[c] is None for r in contents[built.latest])]
    assert not empty, f"columns null in every row: {empty}"


def test_time_travel_by_timestamp_agrees(spark, built):
    """Halfway between two commits, both resolve the time to the earlier one.

    On S3 this needs shoplake to resolve the time from a `_delta_log`
    listing (milliseconds), as Spark does: deltalake 1.1's
    `load_with_datetime` takes a commit's time from a HEAD request when the
    version is not in the loaded snapshot's commit listing (e.g. before a
    checkpoint), and HEAD's Last-Modified has whole seconds, so a commit
    made later in the same second as the requested time was taken as
    already made."""
    times = {v: datetime.fromisoformat(h["timestamp"]) for v, h in built.history.items()}
    checked = 0
    for version in range(built.latest):
        gap = times[version + 1] - times[version]
        if gap < timedelta(milliseconds=400):
            continue
        moment = times[version] + gap / 2
        theirs, ours = spark_and_shoplake(spark, built, timestampAsOf=moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                                          ours=moment.isoformat().replace("+00:00", "Z"))
        by_version = spark_rows(spark_read(spark, built.spark_table, versionAsOf=version), order=built.defn.order)
        assert_same_rows(theirs, ours, f"as of {moment} (version {version})", key=built.defn.order)
        assert theirs == by_version, f"Spark as of {moment} is not version {version}"
        checked += 1
    assert checked >= built.latest - 2, "commits too close together to test time travel by time"


def test_change_data_feed_agrees(spark, built):
    sl, order = built.sl, built.defn.order
    ranges = [(1, built.latest), (built.correction_version, built.correction_version),
              (built.restore_version, built.restore_version), (built.before_maintain, built.latest)]
    for start, end in ranges:
        theirs = change_rows_spark(spark, built.spark_table, start, end, order=order)
        columns = list(theirs[0]) if theirs else None
        schema = spark_read(spark, built.spark_table, versionAsOf=end).schema
        ours = change_rows_shoplake(sl, built.table, start, end, columns or [], schema=schema)
        assert len(theirs) == len(ours), f"changes {start}..{end}: Spark {len(theirs)} rows, shoplake {len(ours)}"
        assert theirs == ours, f"changes {start}..{end} differ"
    kinds = {r["change"] for r in change_rows_spark(spark, built.spark_table, built.correction_version,
                                                       built.correction_version, order=order)}
    assert {"update_preimage", "update_postimage", "delete", "insert"} <= kinds, kinds


def test_a_reload_is_one_merge_commit_whose_change_feed_is_the_change(spark, built):
    """Each re-load of a date that has rows (the correction, the correction
    again after the restore, the new shops only) is one commit, operation
    MERGE with predicate `<partition> = '<date>'` and Spark's operationMetrics
    as the load counted: it removes the date's files, adds the rewritten ones
    and adds change-data files (`cdc`, under `_change_data/<partition>=<date>/`).
    Spark's `readChangeFeed` of that version is exactly the rows that differ
    between the version and the one before it (pre- and post-images, inserts,
    deletes, with their values), as many of each `_change_type` as the load
    reported, and equals `shoplake changes`: not the copied rows."""
    d = built.defn
    assert len(built.reloads) == 3, built.reloads
    for version, (date, report) in sorted(built.reloads.items()):
        what = f"version {version} ({built.steps[version]})"
        actions = commit_actions(spark, built.spark_table, version)
        kinds = sorted({k for a in actions for k in a})
        assert kinds == ["add", "cdc", "commitInfo", "remove", "txn"], f"{what}: actions {kinds}"
        info = next(a["commitInfo"] for a in actions if "commitInfo" in a)
        assert info["operation"] == "MERGE", f"{what}: {info}"
        assert info["operationParameters"]["predicate"] == f"{d.partition} = '{date}'", f"{what}: {info}"
        old, new = date_rows(spark, built, version - 1, date), date_rows(spark, built, version, date)
        ins, upd, dele = report["rows_inserted"], report["rows_updated"], report["rows_deleted"]
        metrics = {"numTargetRowsInserted": ins, "numTargetRowsUpdated": upd, "numTargetRowsDeleted": dele,
                   "numTargetRowsCopied": len(new) - ins - upd, "numOutputRows": len(new)}
        metrics = {k: str(n) for k, n in metrics.items()}
        assert {k: info["operationMetrics"].get(k) for k in metrics} == metrics, f"{what}: {info}"

        # The date's files are rewritten: all removed, the new ones added, in this commit.
        log = DeltaTable(built.table, version=version - 1, storage_options=built.lake.storage_options)
        had = pa.table(log.get_add_actions(flatten=True)).column("path").to_pylist()
        removed = sorted(a["remove"]["path"] for a in actions if "remove" in a)
        assert removed == sorted(p for p in had if p.startswith(f"{d.partition}={date}/")), f"{what}: removes {removed}"
        added = [a["add"] for a in actions if "add" in a]
        assert all(a["dataChange"] and a["partitionValues"] == {d.partition: date} for a in added), added
        assert (report["files_removed"], report["files_added"]) == (len(removed), len(added)), report
        cdc = [a["cdc"] for a in actions if "cdc" in a]
        assert all(c["path"].startswith(f"_change_data/{d.partition}={date}/") and c["dataChange"] is False
                   and c["partitionValues"] == {d.partition: date} for c in cdc), f"{what}: {cdc}"

        theirs = change_rows_spark(spark, built.spark_table, version, version, order=d.order)
        counts = Counter(r["change"] for r in theirs)
        reported = {"insert": ins, "update_preimage": upd, "update_postimage": upd, "delete": dele}
        assert counts == Counter(reported), f"{what}: Spark's change feed has {dict(counts)}; the load reported {report}"
        assert_change_feed_is_the_change(theirs, old, new, d.key, what)
        schema = spark_read(spark, built.spark_table, versionAsOf=version).schema
        ours = change_rows_shoplake(built.sl, built.table, version, version, list(theirs[0]), schema=schema)
        assert theirs == ours, f"{what}: Spark's change feed and shoplake changes differ"


def date_rows(spark, built, version, date):
    """{key: row without the fingerprint} of `date` at `version`, as Spark reads it."""
    d = built.defn
    df = spark_read(spark, built.spark_table, versionAsOf=version).where(f"{d.partition} = '{date}'")
    return {r[d.key]: {k: v for k, v in r.items() if k != d.row_hash} for r in spark_rows(df, order=d.order)}


def assert_change_feed_is_the_change(feed, old, new, key, what):
    """The change feed of one version (change_rows_spark) has exactly the
    rows that differ between `old` and `new` ({key: row}), with their values."""
    updated = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    wanted = {"insert": [new[k] for k in sorted(new.keys() - old.keys())],
              "delete": [old[k] for k in sorted(old.keys() - new.keys())],
              "update_preimage": [old[k] for k in updated],
              "update_postimage": [new[k] for k in updated]}
    assert {r["change"] for r in feed} <= set(wanted), f"{what}: {sorted({r['change'] for r in feed})}"
    for kind, rows in wanted.items():
        got = sorted(({k: v for k, v in r.items() if k not in ("version", "change")} for r in feed
                      if r["change"] == kind), key=lambda r: r[key])
        assert_same_rows(got, rows, f"{what}: the {kind} rows of the change feed",
                         names=("change feed", "the versions' difference"), key=(key,))


def test_describe_history_lists_every_version_and_operation(spark, built):
    rows = spark.sql(f"DESCRIBE HISTORY delta.`{built.spark_table}`").collect()
    spark_ops = {r["version"]: r["operation"] for r in rows}
    ours = {v: h["operation"] for v, h in built.history.items()}
    assert set(spark_ops) == set(ours)
    assert spark_ops == ours


def test_our_commit_info_is_in_the_log_spark_reads(spark, built):
    """Every shoplake load's commit info carries a `shoplake` object: check it
    through Spark's file system (what a Spark user can read), against `history`."""
    for version, entry in built.history.items():
        if not entry.get("run_id"):
            continue
        info = next(a["commitInfo"] for a in commit_actions(spark, built.spark_table, version) if "commitInfo" in a)
        ours = info["shoplake"]
        assert ours["run_id"] == entry["run_id"]
        for key in ("export_date", "source", "rows_read", "rows_valid", "rows_inserted", "rows_updated",
                    "rows_deleted"):
            if key in entry:
                assert str(ours.get(key)) == str(entry[key]), (version, key, ours.get(key), entry[key])


def test_describe_history_shows_the_run(spark, built):
    """DESCRIBE HISTORY (Spark, Databricks) shows only the commitInfo fields
    Delta defines; unknown keys such as `shoplake` are dropped. The run is
    visible there only because shoplake also writes the `shoplake` object as
    a JSON string under "userMetadata" (`CommitProperties::with_metadata`;
    deltalake-core 1.1.3 promotes that key to commitInfo.userMetadata)."""
    rows = {r["version"]: r for r in spark.sql(f"DESCRIBE HISTORY delta.`{built.spark_table}`").collect()}
    missing = [v for v, h in built.history.items()
               if h.get("run_id") and h["run_id"] not in json.dumps(rows[v].asDict(recursive=True), default=str)]
    assert not missing, (f"DESCRIBE HISTORY does not show shoplake's run id for versions {missing}; "
                         f"userMetadata of the latest: {rows[max(rows)]['userMetadata']!r}")


def test_checkpoint_is_there_and_read(spark, built):
    names = hadoop_list(spark, f"{built.spark_table}/_delta_log")
    assert "_last_checkpoint" in names and any(n.endswith(".checkpoint.parquet") for n in names), names
