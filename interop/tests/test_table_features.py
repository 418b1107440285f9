"""Tables Spark made or upgraded (issue #24): every Delta table feature is
handled right or refused, never silently wrong.

Spark 3.5.7 + Delta 3.3.2 is the other engine, on a local lake and on
MinIO (the `lake` fixture), for each built-in definition where the test
holds for any table (`table_def`). Each case starts from a table shoplake
created and loaded, lets Spark turn a feature on or change the table where
the feature matters, then runs shoplake and reads the result with Spark:
equal to a clean load of the same export, or a refusal that left the table
as it was. docs/interop.md has the table of features and their tests.
"""
import csv
import io
import uuid
from pathlib import Path

import legacy_job
import pytest
from conftest import (
    commit_actions,
    correct,
    generate,
    spark_read,
)

D1, D2, D3 = "2019-06-01", "2019-06-02", "2019-06-03"
NO_EXPORT = "2019-06-09"  # a command refused before reading an export exits 2, not 3
ROWS = 1500


class Case:
    """One fresh table of `defn` in `lake`, D1 loaded by shoplake, with
    exports of D1..D3 (D2 and D3 not loaded)."""

    def __init__(self, lake, defn, work, shoplake_bin):
        self.lake, self.defn = lake, defn
        self.sl = lake.shoplake.for_table(defn)
        local = work / f"features-{lake.id}-{uuid.uuid4().hex[:8]}"
        generate(shoplake_bin, local / "raw", D1, D3, ROWS, seed=24, defn=defn)
        self.local_raw = local / "raw"
        self.raw, _ = lake.publish(local / "raw", f"features-{local.name}")
        self.table, self.spark_table = lake.table(f"features-{local.name}/{defn.name}")
        self.work = local
        self.load(D1)

    def load(self, date, *extra, source=None, expect=0):
        return self.sl.ingest(self.table, source or self.raw, date, *extra, expect=expect)

    def sql(self, statement):
        return self.lake.spark.sql(statement.replace("{t}", f"delta.`{self.spark_table}`")).collect()

    def spark_count(self, where="true"):
        return self.sql(f"SELECT count(*) AS n FROM {{t}} WHERE {where}")[0]["n"]

    def version(self):
        return self.sl.version(self.table)

    def export(self, date):
        return self.defn.export(self.local_raw, date)

    def publish_export(self, date, text, name):
        """An export of `date` with `text`, as a source of its own."""
        root = self.work / name
        path = self.defn.export(root, date)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return self.lake.publish(root, f"{self.work.name}-{name}")[0]


@pytest.fixture
def case_of(lake, work, shoplake_bin):
    """A fresh case of a definition, on the local lake and on MinIO."""
    return lambda defn: Case(lake, defn, work, shoplake_bin)


@pytest.fixture
def local_case_of(local_lake, work, shoplake_bin):
    """A fresh case on the local lake only (refusals read and write no data:
    the store makes no difference to them)."""
    return lambda defn: Case(local_lake, defn, work, shoplake_bin)


def refusal(sl, table, *args, feature):
    """Runs a shoplake command expecting exit 2 naming `feature`."""
    proc = sl.run(*args, "--table", table, expect=2)
    assert feature in proc.stderr, proc.stderr
    return proc


def count_column(defn):
    return next(c["name"] for c in defn.columns if c["kind"] == "count")


# ---------------------------------------------------------------- 0. administration


def test_spark_administers_the_tables_shoplake_creates(case_of, table_def):
    """Properties, constraints, OPTIMIZE, VACUUM and DESCRIBE DETAIL from
    Spark work on a table shoplake created (its statistics columns list no
    boolean or list column, which Delta Spark refuses), and shoplake loads
    after them."""
    c = case_of(table_def)
    detail = c.sql("DESCRIBE DETAIL {t}")[0]
    stats = detail["properties"]["delta.dataSkippingStatsColumns"].split(",")
    kinds = {col["name"]: col["kind"] for col in table_def.columns}
    assert not [s for s in stats if kinds.get(s) in ("flag", "count_list", "text_list", "row_hash")], stats
    # (A property the definition declares is the definition's: a load sets
    # it back. This one it does not declare.)
    c.sql("ALTER TABLE {t} SET TBLPROPERTIES ('shoplake.test.owner' = 'data-platform', 'delta.enableDeletionVectors' = 'false')")
    c.sql(f"ALTER TABLE {{t}} ADD CONSTRAINT has_key CHECK ({table_def.key} IS NOT NULL)")
    c.sql("OPTIMIZE {t}")
    c.sql("VACUUM {t} RETAIN 720 HOURS")
    report = c.load(D2)
    assert report["status"] == "committed", report
    assert c.spark_count(f"{table_def.partition} = '{D2}'") == report["rows_valid"]
    assert c.sql("DESCRIBE DETAIL {t}")[0]["properties"]["shoplake.test.owner"] == "data-platform"


# ---------------------------------------------------------------- 3. constraints


def test_rows_breaking_a_check_constraint_are_refused(case_of, table_def):
    """Spark adds a CHECK constraint every row loaded so far keeps; a
    corrected re-export breaks it in some rows: exit 4, the constraint and
    the lines named, nothing committed; the export that keeps it loads."""
    c = case_of(table_def)
    column = count_column(table_def)
    top = c.sql(f"SELECT max({column}) AS m FROM {{t}}")[0]["m"]
    # (Delta counts a null result as broken: the constraint says what a null is.)
    c.sql(f"ALTER TABLE {{t}} ADD CONSTRAINT capped CHECK ({column} IS NULL OR {column} <= {top})")
    version, rows = c.version(), c.spark_count()
    corrected = c.work / "corrected"
    correct(c.export(D1), table_def.export(corrected, D1), defn=table_def)
    source = c.lake.publish(corrected, f"{c.work.name}-corrected")[0]
    proc = c.sl.run("ingest", "--table", c.table, "--source", source, "--date", D1, expect=4)
    assert "CHECK constraint capped" in proc.stderr and "lines" in proc.stderr, proc.stderr
    assert (c.version(), c.spark_count()) == (version, rows), "nothing committed"
    # A NOT NULL rule as Spark adds one (on a column no loaded row leaves
    # empty), and an export with that column empty in one line.
    nullable = [col["name"] for col in table_def.columns
                if col.get("nullable", True) and col["kind"] in ("text", "count", "float", "decimal")
                and col["name"] not in (table_def.key, table_def.partition)]
    column = next((n for n in nullable if c.spark_count(f"{n} IS NULL") == 0), None)
    assert column, f"a nullable column without nulls among {nullable}"
    c.sql(f"ALTER TABLE {{t}} ADD CONSTRAINT known CHECK ({column} IS NOT NULL)")
    version = c.version()
    lines = c.export(D2).read_text(encoding="utf-8").splitlines(keepends=True)
    fields = next(csv.reader([lines[5]]))
    fields[next(csv.reader([lines[0]])).index(column)] = ""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    source = c.publish_export(D2, "".join(lines[:5] + [buf.getvalue()] + lines[6:]), "one-empty")
    proc = c.sl.run("ingest", "--table", c.table, "--source", source, "--date", D2, expect=4)
    assert "CHECK constraint known" in proc.stderr and "(line 6)" in proc.stderr, proc.stderr
    assert c.version() == version
    report = c.load(D2)
    assert c.spark_count(f"{table_def.partition} = '{D2}'") == report["rows_valid"]


# ---------------------------------------------------------------- 1. deletion vectors


def test_deletion_vectors_spark_writes_are_read_counted_and_rewritten(case_of, table_def):
    """Spark's DELETE and UPDATE write deletion vectors (only some rows of a
    file go); shoplake counts the live rows (the volume check's previous
    day), re-loads the date back to the export with exact counts and removes
    the old file with its deletion vector; history, changes, OPTIMIZE and
    restore work, and the identical re-run shortcut is not taken."""
    c = case_of(table_def)
    key, part = table_def.key, table_def.partition
    loaded = c.spark_count()
    c.sql("ALTER TABLE {t} SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    c.sql(f"DELETE FROM {{t}} WHERE {key} < '2'")
    deleted = loaded - c.spark_count()
    assert 0 < deleted < loaded
    dv_version = c.version()
    actions = commit_actions(c.lake.spark, c.spark_table, dv_version)
    assert any("deletionVector" in (a.get("add") or {}) and a["add"]["deletionVector"] for a in actions), actions
    # The volume check compares D2 with the rows D1 holds now.
    report = c.load(D2)
    volume = next(r for r in report["checks"] if r["kind"] == "volume")
    assert f"against {loaded - deleted} on {D1}" in volume["detail"], volume
    # The same export of D1 again: the deleted rows come back, the rest stays.
    report = c.load(D1)
    assert (report["status"], report["rows_inserted"], report["rows_updated"], report["rows_deleted"]) == \
        ("committed", deleted, 0, 0), report
    assert c.spark_count(f"{part} = '{D1}'") == report["rows_valid"]
    removes = [a["remove"] for a in commit_actions(c.lake.spark, c.spark_table, report["table_version"]) if "remove" in a]
    assert any(r.get("deletionVector") for r in removes), "the file with a deletion vector is removed with it"
    # An UPDATE of some rows (deletion vector + new file), then shoplake again.
    column = count_column(table_def)
    c.sql(f"UPDATE {{t}} SET {column} = {column} + 1 WHERE {part} = '{D1}' AND {key} < '4'")
    report = c.load(D1)
    assert report["status"] == "committed" and report["rows_updated"] > 0, report
    assert report["rows_inserted"] == report["rows_deleted"] == 0, report
    # History, changes, OPTIMIZE and restore on a table with deletion vectors.
    assert c.sl.json_lines("history", "--table", c.table, "--format", "json")
    changes = c.sl.changes(c.table, dv_version + 1, c.version())
    assert changes, "the change feed of shoplake's re-loads"
    # Spark's UPDATE of some rows of D2 leaves two files, one with a
    # deletion vector: OPTIMIZE compacts them through it.
    c.sql(f"UPDATE {{t}} SET {column} = {column} + 1 WHERE {part} = '{D2}' AND {key} < '3'")
    before = sorted(map(str, c.sql(f"SELECT * FROM {{t}} WHERE {part} = '{D2}'")))
    c.sl.run("maintain", "--table", c.table, "--optimize")
    assert sorted(map(str, c.sql(f"SELECT * FROM {{t}} WHERE {part} = '{D2}'"))) == before, \
        "OPTIMIZE keeps the rows as they read through the deletion vector"
    c.sl.run("restore", "--table", c.table, "--version", str(dv_version))
    assert c.spark_count() == loaded - deleted, "restored to the version with Spark's deletion vector"


# ---------------------------------------------------------------- 4. append-only


def test_an_append_only_table_takes_new_dates_and_refuses_rewrites(case_of):
    from conftest import CONFIG
    c = case_of(CONFIG)
    c.sql("ALTER TABLE {t} SET TBLPROPERTIES ('delta.appendOnly' = 'true')")
    assert c.load(D2)["status"] == "committed"
    version, rows = c.version(), c.spark_count()
    corrected = c.work / "corrected"
    correct(c.export(D1), CONFIG.export(corrected, D1))
    source = c.lake.publish(corrected, f"{c.work.name}-corrected")[0]
    proc = c.sl.run("ingest", "--table", c.table, "--source", source, "--date", D1, expect=2)
    assert "append-only" in proc.stderr, proc.stderr
    assert (c.version(), c.spark_count()) == (version, rows)
    assert c.load(D1)["status"] == "unchanged", "the identical re-run still works"


# ---------------------------------------------------------------- 2., 5., 6. refused and handled


# (what Spark sets, the feature shoplake names)
REFUSED = [
    ("'delta.enableRowTracking' = 'true'", "rowTracking"),
    ("'delta.enableInCommitTimestamps' = 'true'", "inCommitTimestamp"),
    ("'delta.enableTypeWidening' = 'true'", "typeWidening"),
    ("'delta.feature.vacuumProtocolCheck' = 'supported'", "vacuumProtocolCheck"),
    ("'delta.feature.allowColumnDefaults' = 'supported'", "allowColumnDefaults"),
    ("'delta.feature.domainMetadata' = 'supported'", "domainMetadata"),
]


@pytest.mark.parametrize("properties,feature", REFUSED, ids=[f for _, f in REFUSED])
def test_a_feature_shoplake_does_not_honour_is_refused_before_any_work(local_case_of, properties, feature):
    """Spark turns the feature on; every shoplake command that writes exits
    2 naming it, before reading an export; the table stays as it was and
    both engines still read it."""
    from conftest import CONFIG
    c = local_case_of(CONFIG)
    c.sql(f"ALTER TABLE {{t}} SET TBLPROPERTIES ({properties})")
    version, rows = c.version(), c.spark_count()
    refusal(c.sl, c.table, "ingest", "--source", c.raw, "--date", NO_EXPORT, feature=feature)
    refusal(c.sl, c.table, "ingest", "--source", c.raw, "--date", D2, feature=feature)
    refusal(c.sl, c.table, "maintain", "--optimize", feature=feature)
    refusal(c.sl, c.table, "restore", "--version", "0", feature=feature)
    assert (c.version(), c.spark_count()) == (version, rows)
    tables = c.sl.run("tables", "--lake", str(Path(c.table).parent)).stdout
    assert feature in tables, tables


HANDLED = [
    ("'delta.feature.timestampNtz' = 'supported'", "timestampNtz"),
    ("'delta.enableDeletionVectors' = 'true'", "deletionVectors"),
    ("'delta.checkpointPolicy' = 'v2'", "v2Checkpoint"),
]


@pytest.mark.parametrize("properties,feature", HANDLED, ids=[f for _, f in HANDLED])
def test_a_feature_shoplake_honours_lets_it_load_and_checkpoint(case_of, properties, feature):
    """Spark turns the feature on (and, for v2 checkpoints, writes one);
    shoplake loads a date, re-loads one, writes a checkpoint, and Spark
    reads what shoplake wrote."""
    from conftest import CONFIG
    c = case_of(CONFIG)
    c.sql(f"ALTER TABLE {{t}} SET TBLPROPERTIES ({properties})")
    if feature == "v2Checkpoint":
        jvm, spark = c.lake.spark._jvm, c.lake.spark
        jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, c.spark_table).checkpoint()
    report = c.load(D2)
    assert report["status"] == "committed", report
    corrected = c.work / "corrected"
    correct(c.export(D1), CONFIG.export(corrected, D1))
    source = c.lake.publish(corrected, f"{c.work.name}-corrected")[0]
    report = c.load(D1, source=source)
    assert report["status"] == "committed", report
    c.sl.run("maintain", "--table", c.table, "--checkpoint")
    shoplake_rows = c.sl.query(c.table, f"SELECT count(*) AS n FROM {CONFIG.name}")[0]["n"]
    assert c.spark_count() == shoplake_rows
    assert c.spark_count(f"{CONFIG.partition} = '{D1}'") == report["rows_valid"]
    assert spark_read(c.lake.spark, c.spark_table).count() == shoplake_rows


# ---------------------------------------------------------------- 2. column mapping


def test_column_mapping_a_column_dropped_and_added_again_is_written_under_its_new_name(case_of, table_def):
    """Spark turns column mapping on (name mode), drops a column and adds it
    again (a new physical name: the dates loaded before read it as null);
    shoplake loads a new date and re-loads the old one, and Spark reads
    every value shoplake wrote, not nulls."""
    c = case_of(table_def)
    part = table_def.partition
    column = next(col["name"] for col in reversed(table_def.columns)
                  if col.get("nullable", True) and col["kind"] in ("text", "count", "float")
                  and col["name"] not in (table_def.key, part))
    kind = {"text": "STRING", "count": "BIGINT", "float": "DOUBLE"}[table_def.column(column)["kind"]]
    # (Delta upgrades the protocol as column mapping needs.)
    c.sql("ALTER TABLE {t} SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name')")
    c.sql(f"ALTER TABLE {{t}} DROP COLUMN {column}")
    c.sql(f"ALTER TABLE {{t}} ADD COLUMN {column} {kind}")
    assert c.spark_count(f"{column} IS NOT NULL") == 0
    for date in (D2, D1):
        report = c.load(date)
        assert report["status"] == "committed", report
    shoplake = c.sl.query(c.table, f"SELECT count(*) AS n FROM {table_def.name} WHERE {column} IS NOT NULL")[0]["n"]
    assert shoplake > 0
    assert c.spark_count(f"{column} IS NOT NULL") == shoplake, "Spark reads what shoplake wrote"
    assert c.spark_count() == c.sl.query(c.table, f"SELECT count(*) AS n FROM {table_def.name}")[0]["n"]
    assert c.load(D1)["status"] == "unchanged"
    physical = [f for f in c.sql("DESCRIBE DETAIL {t}")]
    assert physical[0]["properties"]["delta.columnMapping.mode"] == "name"


def test_a_legacy_table_with_column_mapping_in_id_mode_is_taken_over(local_lake, work, shoplake_bin, spark):
    """The legacy job's table, created by Spark with column mapping in id
    mode (Parquet columns found by field id): shoplake takes it over (the
    fingerprint column gets a physical name and id of its own), loads and
    re-loads, and Spark reads the same rows."""
    from conftest import CONFIG
    local = work / f"id-mode-{uuid.uuid4().hex[:8]}"
    generate(shoplake_bin, local / "raw", D1, D2, ROWS, seed=25)
    table, spark_table = local_lake.table(f"{local.name}/shopify_configuration")
    spark.conf.set("spark.databricks.delta.properties.defaults.columnMapping.mode", "id")
    try:
        legacy_job.run(spark, "write", spark_table, str(CONFIG.export(local / "raw", D1)), D1)
    finally:
        spark.conf.unset("spark.databricks.delta.properties.defaults.columnMapping.mode")
    sl = local_lake.shoplake
    for date in (D1, D2):
        report = sl.ingest(table, str(local / "raw"), date)
        assert report["status"] in ("committed", "unchanged"), report
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{spark_table}`").collect()[0]
    assert detail["properties"]["delta.columnMapping.mode"] == "id"
    ours = sl.query(table, "SELECT count(*) AS n, count(_row_hash) AS h FROM shopify_configuration")[0]
    theirs = spark.sql(f"SELECT count(*) AS n, count(_row_hash) AS h FROM delta.`{spark_table}`").collect()[0]
    assert (theirs["n"], theirs["h"]) == (ours["n"], ours["h"]) == (ours["n"], ours["n"]), (ours, theirs)
    assert sl.ingest(table, str(local / "raw"), D2)["status"] == "unchanged"
