"""Spark 3.5 + Delta 3.3 and Python deltalake 1.6.6 read a table across a
column added to its definition (issue #16), locally and on MinIO.

For each built-in definition, in a copy of tables/ (`SHOPLAKE_TABLES`):
dates 1-3 loaded with today's columns; a nullable column added to the
definition, with `missing_columns = "null"` (shopify_configuration gains
`loyalty_tier`, a text; shopify_usage_daily `refunds`, a decimal(12,2));
dates 4-5 from exports that have it (the first of these loads adds the
column in its own commit, beside its rows: one version); date 2
re-loaded from its old export (no version) and from one that has the column
(exactly the rows with a value updated); `restore` to the last version
before the column (the schema as it was); date 4 loaded again (the column
added again).

At every version, Spark (`versionAsOf`) and Python deltalake read exactly
what `shoplake query --as-of` reads, with that version's columns (before
the change: no column; after: null for rows loaded before, values for rows
that had one); Spark's change data feed across the change equals `shoplake
changes`; the protocol stays what test_protocol.py records.
"""
import csv
import re
import shutil
from decimal import Decimal

import pytest
from conftest import (
    TableDef,
    assert_same_rows,
    canonical_rows,
    change_rows_shoplake,
    change_rows_spark,
    commit_actions,
    complete,
    exact_decimal,
    generate,
    spark_read,
)
from deltalake import DeltaTable
from test_protocol import EXPECTED

ROWS = 200
DATES = ["2019-04-01", "2019-04-02", "2019-04-03", "2019-04-04", "2019-04-05"]
# The column each definition gains: (name, the rest of its [[columns]] entry, Spark's type).
ADDED = {
    "shopify_configuration": (
        "loyalty_tier", 'kind = "text"\nsample = { values = ["gold", "silver"], empty = 0.3 }', "string"),
    "shopify_usage_daily": (
        "refunds", 'kind = "decimal"\nprecision = 12\nscale = 2\nsample = { min = 0, max = 100, empty = 0.3 }',
        "decimal(12,2)"),
}


def add_column(defn, name, entry):
    """The definition (a copy) gains a nullable column at its end, and loads
    exports that lack it (`missing_columns = "null"`, a top-level key)."""
    path = defn.tables / defn.name / "table.toml"
    text = re.sub(r"(?m)^missing_columns\s*=.*\n", "", path.read_text(encoding="utf-8"))
    path.write_text(f'missing_columns = "null"\n{text}\n[[columns]]\nname = "{name}"\n{entry}\n', encoding="utf-8")
    return TableDef(defn.name, defn.tables)


class Evolved:
    """The table and what was done to it, version by version."""

    def __init__(self):
        self.steps = {}  # version -> what made it
        self.has_column = {}  # version -> whether its schema has the added column


@pytest.fixture(scope="module")
def evolved(lake, table_def, work, shoplake_bin):
    name = table_def.name
    column, entry, _ = ADDED[name]
    tables = work / f"tables-{lake.id}-{name}"
    shutil.copytree(table_def.tables, tables)
    before = TableDef(name, tables)
    local = work / f"evolution-{lake.id}-{name}"
    generate(shoplake_bin, local / "old", DATES[0], DATES[2], ROWS, seed=7, defn=before)
    old, _ = lake.publish(local / "old", f"evolution-old-{name}")
    table, spark_table = lake.table(f"{name}_evolving")

    e = Evolved()
    e.name, e.column, e.table, e.spark_table, e.lake = name, column, table, spark_table, lake
    sl = lake.shoplake.for_table(before)

    def step(what, fn, adds=1, has_column=True):
        first = sl.version(e.table) if e.steps else -1
        result = fn()
        after = sl.version(e.table)
        assert after == first + adds, f"{what} added {after - first} versions, not {adds}: {result}"
        for v in range(first + 1, after + 1):
            e.steps[v] = what
            e.has_column[v] = has_column
        return result

    for date in DATES[:3]:
        step(f"load {date}", lambda d=date: sl.ingest(table, old, d), adds=2 if date == DATES[0] else 1,
             has_column=False)
    e.before = sl.version(table)

    e.defn = add_column(before, column, entry)
    sl = lake.shoplake.for_table(e.defn)
    e.sl = sl
    # The same seed: the columns the old exports had keep their values.
    e.new_exports = generate(shoplake_bin, local / "new", DATES[0], DATES[4], ROWS, seed=7, defn=e.defn)
    new, _ = lake.publish(local / "new", f"evolution-new-{name}")
    e.fourth = step(f"load {DATES[3]} (adds {column})", lambda: sl.ingest(table, new, DATES[3]))
    e.added = e.before + 1
    step(f"load {DATES[4]}", lambda: sl.ingest(table, new, DATES[4]))
    e.fifth = sl.version(table)
    e.rerun_old = sl.ingest(table, old, DATES[1])
    e.after_rerun = sl.version(table)
    e.refresh = step(f"{DATES[1]} from an export with {column}", lambda: sl.ingest(table, new, DATES[1]))
    e.refresh_version = sl.version(table)
    step("restore to before the column", lambda: sl.run("restore", "--table", table, "--version", e.before),
         has_column=False)
    e.restore_version = sl.version(table)
    e.reload = step(f"load {DATES[3]} again (adds {column} again)", lambda: sl.ingest(table, new, DATES[3]))
    e.latest = sl.version(table)
    e.history = {h["version"]: h for h in sl.history(table)}
    return e


def test_the_sequence_did_what_it_says(spark, evolved):
    e = evolved
    assert e.fourth["added_columns"] == [e.column], e.fourth
    # One version: the new schema and the date's files in the load's commit.
    assert e.history[e.added]["operation"] == "WRITE", e.history[e.added]
    assert f"added {e.column}" in (e.history[e.added].get("columns") or ""), e.history[e.added]
    assert action_kinds(spark, e, e.added) == ["add", "commitInfo", "metaData", "txn"]
    # Date 2 from its old export (no such column): nothing to do, no version.
    r = e.rerun_old
    assert (r["status"], r["rows_updated"], r["missing_columns"]) == ("unchanged", 0, [e.column]), r
    assert e.after_rerun == e.fifth, f"re-loading {DATES[1]} from its old export added a version: {r}"
    # From an export with the column: exactly the rows that have a value are updated.
    r = e.refresh
    with_value = e.sl.query(e.table, f"SELECT count({e.column}) AS n FROM {e.name} "
                                     f"WHERE {e.defn.partition} = '{DATES[1]}'", as_of=str(e.refresh_version))
    assert (r["rows_inserted"], r["rows_deleted"], r["rows_updated"]) == (0, 0, with_value[0]["n"]), r
    assert with_value[0]["n"] > 0
    # ... in one MERGE commit that rewrites the date with change data, and no schema change.
    assert e.history[e.refresh_version]["operation"] == "MERGE", e.history[e.refresh_version]
    assert action_kinds(spark, e, e.refresh_version) == ["add", "cdc", "commitInfo", "remove", "txn"]
    assert e.history[e.restore_version]["operation"] == "RESTORE"
    # After the restore, the load of date 4 adds the column again in its own commit.
    assert e.reload["added_columns"] == [e.column], e.reload
    assert e.history[e.latest]["operation"] == "WRITE", e.history[e.latest]
    assert action_kinds(spark, e, e.latest) == ["add", "commitInfo", "metaData", "txn"]


def action_kinds(spark, e, version):
    """The kinds of action in the commit of `version`."""
    return sorted({k for a in commit_actions(spark, e.spark_table, version) for k in a})


def test_spark_reads_every_version_with_its_columns(spark, evolved):
    e = evolved
    d, column = e.defn, e.column
    contents = {}
    for version in range(e.latest + 1):
        what = f"version {version} ({e.steps.get(version, 'create')})"
        df = spark_read(spark, e.spark_table, versionAsOf=version)
        names = [f.name for f in df.schema.fields]
        assert (column in names) == e.has_column[version], f"{what}: Spark's columns {names}"
        assert names == e.sl.columns(e.table, as_of=str(version)), f"{what}: Spark's and shoplake's columns differ"
        if column in names:
            assert df.schema[column].dataType.simpleString() == ADDED[e.name][2]
        theirs = canonical_rows((r.asDict() for r in df.collect()), df.schema, order=d.order)
        ours = canonical_rows(complete(e.sl.rows(e.table, as_of=str(version)), names), df.schema, order=d.order)
        assert_same_rows(theirs, ours, what, key=d.order)
        contents[version] = theirs

    def values(version, date):
        """{key: the added column's value} of the date's rows at `version`."""
        return {r[d.key]: r[column] for r in contents[version] if r[d.partition] == date}

    def assert_values_of_the_export(version, date, why):
        read = values(version, date)
        wanted = {k: v for k, v in export_values(e, date).items() if k in read}
        got = {k: v for k, v in read.items() if v is not None}
        lost = sorted(set(wanted) - set(got))
        if got != wanted:
            wrong = sorted(k for k in set(got) & set(wanted) if got[k] != wanted[k])
            others = f", {len(wrong)} another value (e.g. {[(k, got[k], wanted[k]) for k in wrong[:2]]})" if wrong else ""
            pytest.fail(f"version {version} ({why}): of the {len(wanted)} rows of {date} whose export has a "
                        f"{column}, {len(lost)} read null (e.g. {lost[:2]}){others}; {len(got)} read a value")

    # Rows loaded before the column read null; rows loaded with it, the export's values.
    for date in DATES[:3]:
        assert values(e.fifth, date) and set(values(e.fifth, date).values()) == {None}, date
    assert_values_of_the_export(e.fifth, DATES[3], f"the load of {DATES[3]} that added {column}")
    assert_values_of_the_export(e.fifth, DATES[4], f"the load of {DATES[4]}, after the column was added")
    assert_values_of_the_export(e.refresh_version, DATES[1], f"{DATES[1]} re-loaded with {column}")
    assert_values_of_the_export(e.latest, DATES[3], f"{DATES[3]} loaded again after the restore, adding {column}")
    assert contents[e.restore_version] == contents[e.before]


def export_values(e, date):
    """{key: the added column's value, as a table read gives it} of the rows
    of `date`'s new export that have one."""
    kind = e.defn.column(e.column)
    with open(e.defn.export(e.new_exports, date), newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r[e.column]]
    if kind["kind"] == "decimal":
        return {r[e.defn.key]: exact_decimal(Decimal(r[e.column]), kind["scale"]) for r in rows}
    return {r[e.defn.key]: r[e.column] for r in rows}


def test_python_deltalake_reads_every_version_with_its_columns(evolved):
    e = evolved
    d = e.defn
    for version in range(e.latest + 1):
        what = f"version {version} ({e.steps.get(version, 'create')})"
        arrow = DeltaTable(e.table, version=version, storage_options=e.lake.storage_options).to_pyarrow_table()
        names = arrow.schema.names
        assert (e.column in names) == e.has_column[version], f"{what}: Python deltalake's columns {names}"
        assert names == e.sl.columns(e.table, as_of=str(version)), f"{what}: deltalake's and shoplake's columns differ"
        theirs = canonical_rows(arrow.to_pylist(), arrow.schema, order=d.order)
        ours = canonical_rows(complete(e.sl.rows(e.table, as_of=str(version)), names), arrow.schema, order=d.order)
        assert_same_rows(theirs, ours, what, names=("Python deltalake", "shoplake"), key=d.order)


@pytest.mark.parametrize("span", ["add", "refresh", "restore", "whole"])
def test_change_data_feed_spans_the_column(spark, evolved, span):
    """Spark's `readChangeFeed` over a range of versions equals `shoplake
    changes` over it: the column's addition and first loads (`add`), the
    date re-loaded with values (`refresh`), the restore to before the column
    and the load that adds it again (`restore`), everything (`whole`)."""
    e = evolved
    start, end = {
        "add": (1, e.fifth),
        "refresh": (e.refresh_version, e.refresh_version),
        "restore": (e.restore_version, e.latest),
        "whole": (1, e.latest),
    }[span]
    theirs = change_rows_spark(spark, e.spark_table, start, end, order=e.defn.order)
    assert theirs, f"no change between {start} and {end}"
    schema = spark_read(spark, e.spark_table, versionAsOf=end).schema
    ours = change_rows_shoplake(e.sl, e.table, start, end, list(theirs[0]), schema=schema)
    assert len(theirs) == len(ours), f"changes {start}..{end}: Spark {len(theirs)} rows, shoplake {len(ours)}"
    for a, b in zip(theirs, ours):
        assert a == b, f"changes {start}..{end}: first difference: Spark {a}, shoplake {b}"
    if span == "refresh":
        post = [r for r in theirs if r["change"] == "update_postimage"]
        pre = [r for r in theirs if r["change"] == "update_preimage"]
        assert len(post) == len(pre) == e.refresh["rows_updated"] == len(theirs) / 2, "not only the updated rows"
        assert all(r[e.column] is None for r in pre) and all(r[e.column] is not None for r in post)


def test_protocol_stays_as_low_as_the_features_used(spark, evolved):
    """Adding a column needs no table feature: the load that adds it and the
    other loads carry no protocol action; the table's is test_protocol.py's from
    version 0 on (RESTORE, delta-rs's, states the same protocol again); no
    column mapping."""
    e = evolved
    protocols = {}
    for version in range(e.latest + 1):
        for action in commit_actions(spark, e.spark_table, version):
            if "protocol" in action:
                protocols[version] = action["protocol"]
            if "metaData" in action:
                mode = action["metaData"].get("configuration", {}).get("delta.columnMapping.mode", "none")
                assert mode == "none", f"version {version} turns on column mapping ({mode})"
    assert set(protocols) <= {0, e.restore_version} and 0 in protocols, f"protocol actions by version: {protocols}"
    assert all(p == EXPECTED for p in protocols.values()), f"protocol actions by version: {protocols}"
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{e.spark_table}`").collect()[0].asDict()
    assert {k: detail[k] for k in EXPECTED} == EXPECTED, detail
    for version in (e.before, e.fifth, e.latest):
        p = DeltaTable(e.table, version=version, storage_options=e.lake.storage_options).protocol()
        seen = (p.min_reader_version, p.min_writer_version, p.reader_features, p.writer_features)
        assert seen == (EXPECTED["minReaderVersion"], EXPECTED["minWriterVersion"], None, None), (version, p)
