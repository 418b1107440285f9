"""Spark reads a table after `shoplake erase --purge` (issue #27: "Spark
reads the table after a purge"; docs/privacy.md, "Purge").

A purge deletes the files of older versions that hold the erased value and,
when the log's statistics hold it, writes a checkpoint at the latest version
and expires the log files up to the newest one holding it. Spark 3.5.7 +
Delta 3.3.2 must still read what is left, locally and on MinIO through
s3a:// (the `lake` fixture), on shopify_configuration (the built-in table
with an `erasable` column, `shop_domain`):

- by `shop_domain` (no statistics for an erasable column: the log stays
  whole): the latest version equals `shoplake query`, the shop has no row,
  `DESCRIBE HISTORY` lists every version (the DELETE, the SET TBLPROPERTIES
  recording the purge), Spark sees the `shoplake.purged.<erasure id>`
  property; every version `shoplake history` marks `unreadable` fails in
  Spark for the right reason (a purged file does not exist) as `query
  --as-of` refuses it (exit 2), every other one (version 0 among them)
  equals `query --as-of`; the change feed of a version marked `changes
  unreadable` fails in Spark (its change-data files are gone);
- by the key, the smallest `id` of a date (the log's min statistics hold
  it): the log is expired (`00000000000000000000.json` is gone), Spark reads
  the latest version from the purge's checkpoint, `DESCRIBE HISTORY` lists
  exactly the versions left, an expired version fails in Spark with "Cannot
  time travel", and a later load (the shop's line in its export suppressed)
  is read by Spark too.

After each purge `erase --verify` exits 0 (nothing holds the value), and
Spark's reads leave the table's objects as they were (no `.crc`, no
checkpoint, no log file written by a reader).

A purged version is unreadable to a query that reads its rows; Delta 3.3
still answers a bare `count()` of it from the log's `numRecords` statistics
(the metadata-only count), without opening a file: the checks below collect
rows.
"""
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import (
    CONFIG,
    Shoplake,
    assert_same_rows,
    canonical_rows,
    change_rows_shoplake,
    change_rows_spark,
    complete,
    generate,
    hadoop_fs,
    hadoop_list,
    spark_read,
    spark_rows,
)

DATES = ["2019-07-01", "2019-07-02", "2019-07-03"]
LATER = "2019-07-04"  # loaded after the purge
ROWS = 200
# The keyed hash of an erased value needs a secret of at least 16 bytes.
ERASURE_KEY = "interop-erasure-key-0123456789"
FIRST_COMMIT = f"{0:020d}.json"


class Purge:
    """A fresh shopify_configuration table in `lake`, DATES loaded by
    shoplake (with the erasure key: a table with erasures needs it to load)."""

    def __init__(self, lake, work, shoplake_bin, name):
        self.lake, self.spark = lake, lake.spark
        self.sl = Shoplake(shoplake_bin, env=dict(lake.shoplake.extra_env, SHOPLAKE_ERASURE_KEY=ERASURE_KEY))
        local = work / f"purge-{lake.id}-{name}"
        generate(shoplake_bin, local / "raw", DATES[0], LATER, ROWS, seed=27)
        self.local_raw = local / "raw"
        self.raw, _ = lake.publish(local / "raw", f"purge-{name}")
        self.table, self.spark_table = lake.table(f"purge-{name}/shopify_configuration")
        for date in DATES:
            self.sl.ingest(self.table, self.raw, date)

    def query(self, sql, as_of=None):
        return self.sl.query(self.table, sql.replace("{t}", CONFIG.name), as_of)

    def count(self):
        return self.query("SELECT count(*) AS n FROM {t}")[0]["n"]

    def erase(self, *args):
        """`erase ... --purge --format json`: its report."""
        proc = self.sl.run("erase", "--table", self.table, *args, "--reason", "interop purge test", "--purge",
                           "--format", "json")
        return json.loads(proc.stdout)

    def verify(self, *args):
        """`erase --verify` exits 0 and says `absent` for the table and its rejects table."""
        proc = self.sl.run("erase", "--verify", "--table", self.table, *args, "--format", "json")
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        assert [r["result"] for r in results] == ["absent", "absent"], results

    def history(self):
        return {h["version"]: h for h in self.sl.history(self.table)}

    def spark_history(self):
        rows = self.spark.sql(f"DESCRIBE HISTORY delta.`{self.spark_table}`").collect()
        return {r["version"]: r["operation"] for r in rows}

    def assert_latest_agrees(self):
        """Spark's latest version is `shoplake query`'s, every row and column."""
        df = spark_read(self.spark, self.spark_table)
        theirs = spark_rows(df, order=CONFIG.order)
        ours = canonical_rows(complete(self.sl.rows(self.table), [f.name for f in df.schema.fields]), df.schema,
                              order=CONFIG.order)
        assert_same_rows(theirs, ours, "the latest version", key=CONFIG.order)
        assert len(theirs) == df.count() == self.count() > 0
        return theirs


@pytest.fixture
def purge_of(lake, work, shoplake_bin):
    """A fresh table to purge, on the local lake and on MinIO."""
    return lambda name: Purge(lake, work, shoplake_bin, name)


def objects(spark, uri):
    """{path under the table: (size, modification time)} of every object
    under it, through Spark's file system."""
    fs, path = hadoop_fs(spark, uri)
    root = fs.makeQualified(path).toString().rstrip("/") + "/"
    out, it = {}, fs.listFiles(path, True)
    while it.hasNext():
        st = it.next()
        out[st.getPath().toString().removeprefix(root)] = (st.getLen(), st.getModificationTime())
    return out


@contextmanager
def spark_writes_nothing(case):
    """Spark's reads inside leave every object under the table as it was."""
    before = objects(case.spark, case.spark_table)
    assert any(p.startswith("_delta_log/") for p in before), before
    yield
    after = objects(case.spark, case.spark_table)
    written = sorted(p for p in after if before.get(p) != after[p])
    gone = sorted(set(before) - set(after))
    assert not written and not gone, f"Spark's reads wrote {written} and removed {gone} under the table"


def spark_error(fn, *args):
    """The text of the error Spark raises running `fn(*args)`."""
    with pytest.raises(Exception) as err:
        fn(*args)
    return str(err.value)


def read_version(case, version):
    """Every row of `version`, as Spark reads it (files opened: not a count)."""
    return spark_read(case.spark, case.spark_table, versionAsOf=version).collect()


def assert_time_travel_agrees(case, report):
    """Every version `shoplake history` lists: marked `unreadable`, Spark
    fails reading its rows (a file the purge deleted does not exist, or,
    for a version whose log is gone, Spark cannot time travel to it) and
    `query --as-of` refuses it (exit 2, naming the erasure); else Spark's
    rows equal `query --as-of`'s. A version marked `changes unreadable`
    reads, but its change feed fails in Spark (its change-data files are
    gone); a readable one's change feed equals `shoplake changes`. Returns
    (readable versions, unreadable versions)."""
    purged = report["purged"][0]
    erasure = report["erasure_id"]
    deleted = [Path(f).name for f in purged["files_deleted"]]
    expired = purged["log_expired_through"]
    readable, unreadable = [], []
    for version, entry in sorted(case.history().items()):
        mark = entry["purged"] or ""
        what = f"version {version} ({entry['operation']}, purged {mark!r})"
        if mark.startswith("unreadable"):
            assert erasure in mark, what
            unreadable.append(version)
            msg = spark_error(read_version, case, version)
            if expired is None:
                assert any(name in msg for name in deleted), \
                    f"{what}: Spark did not fail on a purged file: {msg[:2000]}"
            else:
                assert "Cannot time travel" in msg or any(name in msg for name in deleted), \
                    f"{what}: Spark failed for another reason: {msg[:2000]}"
            refused = case.sl.run("query", "--table", case.table, "--as-of", version, "--format", "json",
                                  "--sql", f"SELECT count(*) AS n FROM {CONFIG.name}", expect=2)
            assert erasure in refused.stderr, f"{what}: {refused.stderr}"
            continue
        readable.append(version)
        df = spark_read(case.spark, case.spark_table, versionAsOf=version)
        theirs = spark_rows(df, order=CONFIG.order)
        rows = complete(case.sl.rows(case.table, as_of=str(version)), [f.name for f in df.schema.fields])
        ours = canonical_rows(rows, df.schema, order=CONFIG.order)
        assert_same_rows(theirs, ours, what, key=CONFIG.order)
        if version == 0:
            continue
        if mark.startswith("changes unreadable"):
            assert erasure in mark, what
            msg = spark_error(change_rows_spark, case.spark, case.spark_table, version, version)
            assert any(name in msg for name in deleted), \
                f"{what}: Spark's change feed did not fail on a purged file: {msg[:2000]}"
        else:
            assert_change_feed_agrees(case, version, what)
    return readable, unreadable


def assert_change_feed_agrees(case, version, what):
    """Spark's change feed of `version` equals `shoplake changes`; a commit
    that changes no row (the purge's SET TBLPROPERTIES) has an empty one in
    both."""
    theirs = change_rows_spark(case.spark, case.spark_table, version, version, order=CONFIG.order)
    if not theirs:
        assert case.history()[version]["operation"] == "SET TBLPROPERTIES", f"{what}: Spark's change feed is empty"
        assert case.sl.changes(case.table, version, version) == [], f"{what}: shoplake has changes where Spark has none"
        return
    schema = spark_read(case.spark, case.spark_table, versionAsOf=version).schema
    ours = change_rows_shoplake(case.sl, case.table, version, version, list(theirs[0]), schema=schema)
    assert theirs == ours, f"{what}: Spark's change feed and shoplake changes differ"


def test_spark_reads_a_table_purged_of_a_shop_domain(purge_of):
    """Erasure by an erasable column: no statistics hold it, the log stays."""
    case = purge_of("domain")
    domains = case.query("SELECT shop_domain FROM {t} GROUP BY shop_domain "
                         f"HAVING count(DISTINCT export_date) = {len(DATES)} ORDER BY shop_domain LIMIT 1")
    assert domains, "no shop_domain on every date"
    domain = domains[0]["shop_domain"]
    before = case.count()

    report = case.erase("--where", f"shop_domain={domain}")
    purged = report["purged"][0]
    assert report["rows_erased"] == len(DATES), report
    assert purged["table"] == case.table and purged["files_deleted"] and not purged["still_holding"], purged
    assert purged["log_expired_through"] is None, purged
    case.verify("--where", f"shop_domain={domain}")
    assert FIRST_COMMIT in hadoop_list(case.spark, f"{case.spark_table}/_delta_log")
    assert case.count() == before - len(DATES)

    with spark_writes_nothing(case):
        case.assert_latest_agrees()
        assert spark_read(case.spark, case.spark_table).where(f"shop_domain = '{domain}'").collect() == []

        ops = case.spark_history()
        ours = case.history()
        assert ops == {v: h["operation"] for v, h in ours.items()}
        assert ops[report["table_version"]] == "DELETE", ops
        assert ops[purged["version"]] == "SET TBLPROPERTIES", ops
        assert purged["version"] == max(ops), ops
        detail = case.spark.sql(f"DESCRIBE DETAIL delta.`{case.spark_table}`").collect()[0]
        recorded = detail["properties"].get(f"shoplake.purged.{report['erasure_id']}", "")
        assert recorded.startswith("versions:"), detail["properties"]

        readable, unreadable = assert_time_travel_agrees(case, report)
        # Every load of a date holding the shop is lost; version 0 (no file)
        # and the erasure's own versions stay.
        assert unreadable == list(range(1, len(DATES) + 1)), unreadable
        assert readable == [0, report["table_version"], purged["version"]], readable
        # Yet a bare count of an unreadable version is answered, from the
        # log's numRecords alone (Delta's metadata-only count): the log
        # holds no erased value, and no file is opened.
        for version in unreadable:
            loaded = sum(h["rows_inserted"] or 0 for v, h in ours.items() if v <= version)
            assert spark_read(case.spark, case.spark_table, versionAsOf=version).count() == loaded, version

    case.verify("--where", f"shop_domain={domain}")


def test_spark_reads_a_table_whose_log_a_purge_expired(purge_of):
    """Erasure by the key, the smallest id of a date: the log's min
    statistics hold it, so the purge checkpoints and expires the log."""
    case = purge_of("key")
    key = case.query(f"SELECT min(id) AS id FROM {{t}} WHERE export_date = '{DATES[0]}'")[0]["id"]

    report = case.erase("--key", key)
    purged = report["purged"][0]
    assert report["rows_erased"] >= 1 and not purged["still_holding"], report
    expired = purged["log_expired_through"]
    assert isinstance(expired, int) and not isinstance(expired, bool), purged
    assert expired >= 1, purged  # the first load's commit holds the key's statistics
    log = hadoop_list(case.spark, f"{case.spark_table}/_delta_log")
    assert FIRST_COMMIT not in log, log
    assert f"{purged['version']:020d}.checkpoint.parquet" in log, log
    case.verify("--key", key)

    with spark_writes_nothing(case):
        case.assert_latest_agrees()
        assert spark_read(case.spark, case.spark_table).where(f"id = '{key}'").collect() == []
        ops = case.spark_history()
        ours = case.history()
        assert ops == {v: h["operation"] for v, h in ours.items()}, (ops, ours)
        assert min(ops) == expired + 1 and max(ops) == purged["version"], ops
        _, unreadable = assert_time_travel_agrees(case, report)
        assert purged["version"] not in unreadable
        for version in range(expired + 1):
            msg = spark_error(read_version, case, version)
            assert "Cannot time travel" in msg, f"version {version}: {msg[:2000]}"

    # A later load: the shop's line in its export stays out.
    export = CONFIG.export(case.local_raw, LATER).read_text(encoding="utf-8")
    lines = sum(1 for line in export.splitlines() if line.split(",", 1)[0] == key)
    load = case.sl.ingest(case.table, case.raw, LATER)
    assert load["status"] == "committed" and load["table_version"] == purged["version"] + 1, load
    assert load["rows_suppressed"] == lines, (lines, load)
    case.verify("--key", key)

    with spark_writes_nothing(case):
        latest = case.assert_latest_agrees()
        assert any(r["export_date"] == LATER for r in latest)
        assert not any(r["id"] == key for r in latest)
        ops = case.spark_history()
        assert ops == {v: h["operation"] for v, h in case.history().items()}, ops
        assert min(ops) == expired + 1 and max(ops) == load["table_version"], ops
        assert_change_feed_agrees(case, load["table_version"], f"the load of {LATER}")
