"""Fixtures of the Spark interop test: the shoplake binary, one Spark
session, and the places tables live (a local directory, and MinIO through
s3:// for shoplake and s3a:// for Spark).

Environment (set by interop/run.sh):
  SHOPLAKE_BIN           the binary under test
  SPARK_JARS             Delta (+ S3A) jars, comma separated (interop/setup.sh)
  INTEROP_WORK           scratch directory
  SHOPLAKE_IT_MINIO_ENDPOINT / _ACCESS_KEY / _SECRET_KEY
                         MinIO, for the s3 half (skipped, with a line saying
                         why, when unset; INTEROP_REQUIRE_S3=1 makes that a failure)
"""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import legacy_job

DEFN = legacy_job.definition()
ALL_COLUMNS = [c["name"] for c in DEFN["columns"]]
ROW_HASH = next(c["name"] for c in DEFN["columns"] if c["kind"] == "row_hash")
# Spark's name of each column's type, by the kind table.toml gives it.
SPARK_TYPE = {
    "text": "string",
    "flag": "boolean",
    "count": "bigint",
    "count_list": "array<bigint>",
    "file_date": "date",
    "row_hash": "binary",
}


def expected_spark_types():
    return {c["name"]: SPARK_TYPE.get(c["kind"], c.get("type")) for c in DEFN["columns"]}


# ---------------------------------------------------------------- shoplake


class ShoplakeError(AssertionError):
    pass


class Shoplake:
    """Runs the binary; every call checks the exit code and parses JSON."""

    def __init__(self, binary, env=None):
        self.binary = binary
        self.env = dict(os.environ, RUST_LOG="warn", **(env or {}))

    def run(self, *args, expect=0):
        for attempt in range(30):  # the binary is rebuilt from time to time
            if os.access(self.binary, os.X_OK):
                break
            time.sleep(2)
        proc = subprocess.run([self.binary, *map(str, args)], env=self.env, capture_output=True, text=True, check=False)
        if expect is not None and proc.returncode != expect:
            raise ShoplakeError(
                f"shoplake {' '.join(map(str, args))} exited {proc.returncode} (expected {expect})\n"
                f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
            )
        return proc

    def json_lines(self, *args):
        out = self.run(*args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def ingest(self, table, source, date, *extra, expect=0):
        proc = self.run("ingest", "--date", date, "--source", source, "--table", table, "--format", "json", *extra,
                        expect=expect)
        return json.loads(proc.stdout) if proc.stdout.strip() else {"exit": proc.returncode, "stderr": proc.stderr}

    def query(self, table, sql, as_of=None):
        args = ["query", "--table", table, "--format", "json", "--sql", sql]
        if as_of is not None:
            args += ["--as-of", as_of]
        return self.json_lines(*args)

    def rows(self, table, as_of=None, where="true"):
        sql = f"SELECT * FROM shopify_configuration WHERE {where} ORDER BY export_date, id"
        return self.query(table, sql, as_of)

    def changes(self, table, start, end):
        return self.json_lines("changes", "--table", table, "--from-version", start, "--to-version", end,
                               "--format", "json")

    def history(self, table):
        return self.json_lines("history", "--table", table, "--format", "json")

    def version(self, table):
        return max(h["version"] for h in self.history(table))


@pytest.fixture(scope="session")
def shoplake_bin():
    binary = os.environ.get("SHOPLAKE_BIN") or str(Path.home() / ".cache/shoplake/target/debug/shoplake")
    for _ in range(60):
        if os.access(binary, os.X_OK):
            return binary
        time.sleep(5)
    pytest.fail(f"shoplake binary {binary} not found (set SHOPLAKE_BIN)")


@pytest.fixture(scope="session")
def work():
    root = Path(os.environ.get("INTEROP_WORK") or "/tmp/shoplake-interop")
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------- Spark


def minio():
    endpoint = os.environ.get("SHOPLAKE_IT_MINIO_ENDPOINT")
    if not endpoint:
        return None
    return {
        "endpoint": endpoint,
        "access_key": os.environ["SHOPLAKE_IT_MINIO_ACCESS_KEY"],
        "secret_key": os.environ["SHOPLAKE_IT_MINIO_SECRET_KEY"],
        "region": os.environ.get("SHOPLAKE_IT_REGION", "us-east-1"),
    }


@pytest.fixture(scope="session")
def spark():
    session = legacy_job.spark_session(
        app="shoplake-interop",
        s3=minio(),
        extra={
            # Small tables: a few tasks instead of Spark's 200 / Delta's 50.
            "spark.sql.shuffle.partitions": "2",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.ui.showConsoleProgress": "false",
        },
    )
    yield session
    session.stop()


def spark_read(spark, uri, **options):
    reader = spark.read.format("delta")
    for key, value in options.items():
        reader = reader.option(key, str(value))
    return reader.load(uri)


def normalize(value):
    """A Spark value as shoplake's JSON writes it."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def spark_rows(df, order=("export_date", "id")):
    rows = [{k: normalize(v) for k, v in row.asDict().items()} for row in df.collect()]
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in order))


def change_rows_spark(spark, uri, start, end):
    df = (spark.read.format("delta").option("readChangeFeed", "true")
          .option("startingVersion", start).option("endingVersion", end).load(uri))
    rows = []
    for row in spark_rows(df, order=("_commit_version", "export_date", "id", "_change_type")):
        row = dict(row)
        row.pop("_commit_timestamp")
        row.pop("_row_hash", None)
        row["version"] = row.pop("_commit_version")
        row["change"] = row.pop("_change_type")
        rows.append(row)
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def change_rows_shoplake(sl, table, start, end, columns):
    rows = complete(sl.changes(table, start, end), columns)
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def complete(rows, columns):
    """shoplake's JSON leaves out nulls: put them back, and refuse unknown keys."""
    out = []
    for row in rows:
        extra = set(row) - set(columns)
        assert not extra, f"shoplake returned columns Spark does not have: {sorted(extra)}"
        out.append({c: row.get(c) for c in columns})
    return out


def assert_same_rows(first_rows, second_rows, what, names=("Spark", "shoplake")):
    """Two sorted lists of rows are equal; else says the first differing row
    and column (`names` says whose the two lists are)."""
    first, second = names
    assert len(first_rows) == len(second_rows), \
        f"{what}: {first} has {len(first_rows)} rows, {second} {len(second_rows)}"
    for a, b in zip(first_rows, second_rows):
        if a != b:
            diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
            raise AssertionError(f"{what}: first differing row {a.get('export_date')} {a.get('id')}: "
                                 f"({first}, {second}) = {diff}")


def assert_fingerprints_kept(changed, loaded, who):
    """Every row `who` left in place still has the `_row_hash` shoplake
    stored, whatever `who` did to its values: only comparing such rows by
    value can find what changed (issue #14)."""
    stored = {r["id"]: r["_row_hash"] for r in loaded}
    differ = [r["id"] for r in changed if r["id"] in stored and r["_row_hash"] != stored[r["id"]]]
    assert not differ, f"{who} changed the stored _row_hash of {len(differ)} rows, e.g. {differ[:3]}"


def assert_load_counts(report, inserted=0, updated=0, deleted=0):
    """An ingest report's exact row counts and status: `committed` when the
    load changed rows, `unchanged` when it did not (rows_unchanged is every
    valid row the load neither inserted nor updated)."""
    changed = inserted + updated + deleted
    want = {
        "status": "committed" if changed else "unchanged",
        "rows_inserted": inserted,
        "rows_updated": updated,
        "rows_deleted": deleted,
        "rows_unchanged": report.get("rows_valid", 0) - inserted - updated,
    }
    got = {k: report.get(k) for k in want}
    assert got == want, f"ingest report {got}, expected {want}; whole report: {report}"


def assert_identical_rerun_is_noop(sl, table, source, date):
    """An identical re-run of `date` changes nothing: no version, no file,
    0 inserted/updated/deleted (PRODUCT.md, "Load semantics")."""
    version = sl.version(table)
    report = sl.ingest(table, source, date)
    assert_load_counts(report)
    assert (report["files_added"], report["files_removed"]) == (0, 0), report
    assert sl.version(table) == version, f"the identical re-run of {date} added a version: {report}"
    return report


def needs(state, *names):
    """Fails a test whose earlier step (a test above it in the module) did not happen."""
    missing = [n for n in names if not hasattr(state, n)]
    if missing:
        pytest.fail(f"depends on an earlier test that failed (no {', '.join(missing)})")


# ---------------------------------------------------------------- where tables live


class Lake:
    """Where one test's tables and exports live, as shoplake and as Spark name them."""

    def __init__(self, kind, work, spark, shoplake_bin):
        self.kind = kind
        self.spark = spark
        self.id = uuid.uuid4().hex[:10]
        if kind == "local":
            self.root = work / f"local-{self.id}"
            self.root.mkdir(parents=True)
            self.shoplake = Shoplake(shoplake_bin)
        else:
            s3 = minio()
            self.prefix = f"interop-{self.id}"
            self.shoplake = Shoplake(shoplake_bin, env={
                "AWS_ENDPOINT_URL": s3["endpoint"],
                "AWS_ACCESS_KEY_ID": s3["access_key"],
                "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
                "AWS_REGION": s3["region"],
            })

    def table(self, name):
        """(shoplake URI, Spark URI) of a table."""
        if self.kind == "local":
            path = str(self.root / "lake" / name)
            return path, path
        key = f"lake/{self.prefix}/{name}"
        return f"s3://{key}", f"s3a://{key}"

    def publish(self, local_dir, name):
        """Makes a local directory of exports a source: (shoplake URI, Spark URI)."""
        if self.kind == "local":
            return str(local_dir), str(local_dir)
        key = f"raw/{self.prefix}/{name}"
        for f in sorted(Path(local_dir).iterdir()):
            hadoop_put(self.spark, str(f), f"s3a://{key}/{f.name}")
        return f"s3://{key}", f"s3a://{key}"


def hadoop_fs(spark, uri):
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark._jsc.hadoopConfiguration()), path


def hadoop_put(spark, local, uri):
    fs, path = hadoop_fs(spark, uri)
    fs.copyFromLocalFile(False, True, spark._jvm.org.apache.hadoop.fs.Path("file://" + local), path)


def hadoop_read_text(spark, uri):
    fs, path = hadoop_fs(spark, uri)
    stream = fs.open(path)
    try:
        return spark._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def hadoop_list(spark, uri):
    fs, path = hadoop_fs(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(path))


def commit_actions(spark, table_uri, version):
    text = hadoop_read_text(spark, f"{table_uri}/_delta_log/{version:020d}.json")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def s3_available():
    if minio() is None:
        if os.environ.get("INTEROP_REQUIRE_S3") == "1":
            pytest.fail("INTEROP_REQUIRE_S3=1 but SHOPLAKE_IT_MINIO_* is not set")
        return False
    return True


@pytest.fixture(scope="module", params=["local", "s3"])
def lake(request, work, spark, shoplake_bin, s3_available):
    if request.param == "s3" and not s3_available:
        pytest.skip("MinIO not configured (SHOPLAKE_IT_MINIO_* unset): s3a half skipped")
    return Lake(request.param, work, spark, shoplake_bin)


@pytest.fixture(scope="module")
def local_lake(work, spark, shoplake_bin):
    return Lake("local", work, spark, shoplake_bin)


# ---------------------------------------------------------------- exports


def generate(shoplake_bin, out, start, end, rows, seed=42, dirty=False):
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    args = ["generate", "--from", start, "--to", end, "--rows", rows, "--seed", seed, "--out", out]
    if dirty:
        args.append("--dirty")
    Shoplake(shoplake_bin).run(*args)
    return out


def correct(src, dst, change_every=25, drop_every=40, add=3):
    """A corrected re-export of one day: every `change_every`-th line gets a
    different install channel and merchandised-query count, every
    `drop_every`-th shop is gone, and `add` new shops appear."""
    lines = Path(src).read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",")
    out = [lines[0]]
    channel = header.index("install_channel")
    count = header.index("nbr_merchandised_queries")
    id_col = header.index("id")
    for n, line in enumerate(lines[1:], start=1):
        if n % drop_every == 0:
            continue
        if n % change_every == 0 and '"' not in line:
            fields = line.rstrip("\r\n").split(",")
            fields[channel] = "direct" if fields[channel] != "direct" else "partner_referral"
            fields[count] = str(int(float(fields[count] or 0)) + 1000)
            line = ",".join(fields) + "\n"
        out.append(line)
    plain = [l for l in lines[1:] if '"' not in l][:add]
    for k, line in enumerate(plain):
        fields = line.rstrip("\r\n").split(",")
        fields[id_col] = f"00000000-0000-4000-8000-{k:012d}"
        out.append(",".join(fields) + "\n")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_text("".join(out), encoding="utf-8")
