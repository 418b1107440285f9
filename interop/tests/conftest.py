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
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import legacy_job

TABLES = HERE.parent.parent / "tables"
# The definitions shipped in tables/: the tests that hold for any table run
# once per definition (the `table_def` fixture).
BUILT_IN = ("shopify_configuration", "shopify_usage_daily")

# Spark's name of each column's type, by the kind table.toml gives it (and,
# for a derived column, by the type it declares).
SPARK_TYPE = {
    "text": "string",
    "flag": "boolean",
    "count": "bigint",
    "count_list": "array<bigint>",
    "float": "double",
    "date": "date",
    "timestamp": "timestamp",
    "text_list": "array<string>",
    "file_date": "date",
    "row_hash": "binary",
}
DERIVED_TYPE = {"long": "bigint", "array<long>": "array<bigint>"}


class TableDef:
    """One table definition (`<tables>/<name>/table.toml`), as the tests need it:
    its columns (with the `_row_hash` shoplake adds when none is declared),
    key, partition column and where a date's export is."""

    def __init__(self, name, tables=TABLES):
        self.name, self.tables = name, Path(tables)
        with open(self.tables / name / "table.toml", "rb") as f:
            self.toml = tomllib.load(f)
        self.columns = self.toml["columns"]
        self.partition = self.toml["partition_by"]
        self.key = next(k for k in self.toml["key"] if k != self.partition)
        self.order = (self.partition, self.key)
        hashes = [c["name"] for c in self.columns if c["kind"] == "row_hash"]
        self.row_hash = hashes[0] if hashes else "_row_hash"
        self.all_columns = [c["name"] for c in self.columns] + ([] if hashes else ["_row_hash"])
        self.source_pattern = self.toml.get("source_pattern", "{date}.csv")

    def __repr__(self):
        return f"TableDef({self.name!r}, {str(self.tables)!r})"

    def export(self, root, date):
        """The export of `date` under the source root `root`."""
        return Path(root) / self.source_pattern.replace("{date}", date)

    def column(self, name):
        return next(c for c in self.columns if c["name"] == name)

    def spark_type(self, c):
        if c["kind"] == "decimal":
            return f"decimal({c['precision']},{c['scale']})"
        if c["kind"] == "derived":
            return DERIVED_TYPE.get(c["type"], c["type"].replace(" ", ""))
        return SPARK_TYPE[c["kind"]]

    def spark_types(self):
        types = {c["name"]: self.spark_type(c) for c in self.columns}
        types.setdefault(self.row_hash, "binary")
        return types


CONFIG = TableDef("shopify_configuration")
DEFN = CONFIG.toml
ALL_COLUMNS = CONFIG.all_columns
ROW_HASH = CONFIG.row_hash


def expected_spark_types():
    return CONFIG.spark_types()


@pytest.fixture(scope="module", params=BUILT_IN)
def table_def(request):
    """Each built-in definition in turn (module-scoped: a module's tables are
    built once per definition)."""
    return TableDef(request.param)


# ---------------------------------------------------------------- shoplake


class ShoplakeError(AssertionError):
    pass


class Shoplake:
    """Runs the binary; every call checks the exit code and parses JSON."""

    def __init__(self, binary, env=None, defn=None):
        self.binary = binary
        self.extra_env = dict(env or {})
        self.env = dict(os.environ, RUST_LOG="warn", **self.extra_env)
        self.defn = defn or CONFIG

    def for_table(self, defn):
        """The same binary and store, for the table `defn` defines (its name
        and its definitions folder through SHOPLAKE_TABLE_NAME / SHOPLAKE_TABLES)."""
        env = dict(self.extra_env, SHOPLAKE_TABLE_NAME=defn.name, SHOPLAKE_TABLES=str(defn.tables))
        return Shoplake(self.binary, env=env, defn=defn)

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
        """One JSON object a line; numbers with a fraction as Decimal (a
        decimal column's value exactly as printed)."""
        out = self.run(*args).stdout
        return [json.loads(line, parse_float=Decimal) for line in out.splitlines() if line.strip()]

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
        d = self.defn
        sql = f"SELECT * FROM {d.name} WHERE {where} ORDER BY {', '.join(d.order)}"
        return self.query(table, sql, as_of)

    def columns(self, table, as_of=None):
        """The table's column names (at `as_of`), as `query` sees them."""
        return [r["column_name"] for r in self.query(table, f"DESCRIBE {self.defn.name}", as_of)]

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
    if isinstance(value, datetime):
        return instant(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def instant(value):
    """A timestamp as its UTC instant, `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, from
    shoplake's RFC 3339 text, pyarrow's aware datetime or Spark's naive one
    (pyspark gives the instant in the Python process's local time)."""
    if value is None:
        return None
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return f"{value} (no UTC offset)"
        value = parsed
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def exact_decimal(value, scale):
    """A decimal(p, scale) value as text with `scale` places (shoplake's
    JSON, Spark's and pyarrow's Decimal alike); a value with more places
    is shown as it is, so that it differs."""
    if value is None:
        return None
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    q = d.quantize(Decimal(1).scaleb(-scale))
    return str(q) if q == d else f"{d} (more than {scale} places)"


def canonical(data_type):
    """A function making a value of this Spark (or pyarrow) type comparable,
    whoever read it: decimals exactly at their scale, doubles as floats,
    timestamps as UTC instants, binary as hex, dates as ISO text, lists item
    by item."""
    import pyarrow as pa
    from pyspark.sql import types as T

    if isinstance(data_type, pa.DataType):
        if pa.types.is_decimal(data_type):
            return lambda v: exact_decimal(v, data_type.scale)
        if pa.types.is_floating(data_type):
            return lambda v: None if v is None else float(v)
        if pa.types.is_timestamp(data_type):
            return instant
        if pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_list_view(data_type):
            item = canonical(data_type.value_type)
            return lambda v: None if v is None else [item(x) for x in v]
        return normalize
    if isinstance(data_type, T.DecimalType):
        return lambda v: exact_decimal(v, data_type.scale)
    if isinstance(data_type, (T.DoubleType, T.FloatType)):
        return lambda v: None if v is None else float(v)
    if isinstance(data_type, T.TimestampType):
        return instant
    if isinstance(data_type, T.ArrayType):
        item = canonical(data_type.elementType)
        return lambda v: None if v is None else [item(x) for x in v]
    return normalize


def canonical_rows(rows, schema, order=("export_date", "id")):
    """Rows (dicts) with every value made comparable by the type of its
    column in `schema` (Spark's StructType or a pyarrow Schema), sorted by `order`."""
    if hasattr(schema, "fields"):  # Spark's StructType
        conv = {f.name: canonical(f.dataType) for f in schema.fields}
    else:  # a pyarrow Schema
        conv = {f.name: canonical(f.type) for f in schema}
    out = [{k: conv.get(k, normalize)(v) for k, v in row.items()} for row in rows]
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in order))


def spark_rows(df, order=("export_date", "id")):
    return canonical_rows((row.asDict() for row in df.collect()), df.schema, order)


def change_rows_spark(spark, uri, start, end, order=("export_date", "id")):
    df = (spark.read.format("delta").option("readChangeFeed", "true")
          .option("startingVersion", start).option("endingVersion", end).load(uri))
    rows = []
    for row in spark_rows(df, order=("_commit_version", *order, "_change_type")):
        row = dict(row)
        row.pop("_commit_timestamp")
        row.pop("_row_hash", None)
        row["version"] = row.pop("_commit_version")
        row["change"] = row.pop("_change_type")
        rows.append(row)
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def change_rows_shoplake(sl, table, start, end, columns, schema=None):
    """shoplake's `changes`, as change_rows_spark gives Spark's (with the
    table's Spark `schema` when a column needs it to compare: decimals,
    timestamps)."""
    rows = complete(sl.changes(table, start, end), columns)
    if schema is not None:
        rows = canonical_rows(rows, schema, order=())
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def complete(rows, columns):
    """shoplake's JSON rows with exactly `columns` (the other reader's), in
    that order: `query` and `changes` write every column, a null as an
    explicit null, so a missing key fails as much as an unknown one."""
    out = []
    for row in rows:
        extra, missing = set(row) - set(columns), set(columns) - set(row)
        assert not extra, f"shoplake returned columns Spark does not have: {sorted(extra)}"
        assert not missing, f"shoplake's JSON row lacks the columns {sorted(missing)} (nulls are written): {row}"
        out.append({c: row[c] for c in columns})
    return out


def assert_same_rows(first_rows, second_rows, what, names=("Spark", "shoplake"), key=("export_date", "id")):
    """Two sorted lists of rows are equal; else says the first differing row
    (by its `key`) and column (`names` says whose the two lists are)."""
    first, second = names
    assert len(first_rows) == len(second_rows), \
        f"{what}: {first} has {len(first_rows)} rows, {second} {len(second_rows)}"
    for a, b in zip(first_rows, second_rows):
        if a != b:
            diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
            raise AssertionError(f"{what}: first differing row {' '.join(str(a.get(k)) for k in key)}: "
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
            self.storage_options = {}
        else:
            s3 = minio()
            self.prefix = f"interop-{self.id}"
            self.shoplake = Shoplake(shoplake_bin, env={
                "AWS_ENDPOINT_URL": s3["endpoint"],
                "AWS_ACCESS_KEY_ID": s3["access_key"],
                "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
                "AWS_REGION": s3["region"],
            })
            # Python deltalake (object_store) on the shoplake URI.
            self.storage_options = {
                "AWS_ENDPOINT_URL": s3["endpoint"],
                "AWS_ACCESS_KEY_ID": s3["access_key"],
                "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
                "AWS_REGION": s3["region"],
                "AWS_ALLOW_HTTP": "true",
            }

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
        for f in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            hadoop_put(self.spark, str(f), f"s3a://{key}/{f.relative_to(local_dir).as_posix()}")
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


def generate(shoplake_bin, out, start, end, rows, seed=42, dirty=False, defn=None):
    """`shoplake generate` of the table `defn` (default shopify_configuration)
    into the source root `out`."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    args = ["generate", "--from", start, "--to", end, "--rows", rows, "--seed", seed, "--out", out]
    if dirty:
        args.append("--dirty")
    if defn is not None:
        args += ["--table-name", defn.name, "--tables", defn.tables]
    Shoplake(shoplake_bin).run(*args)
    return out


def correct(src, dst, change_every=25, drop_every=40, add=3, defn=None):
    """A corrected re-export of one day of the table `defn` (default
    shopify_configuration): every `change_every`-th line gets another value of
    the last text column with sample values (install_channel; plan) and 1000
    more in the first count column (nbr_merchandised_queries; searches), the
    key of every `drop_every`-th line is gone, and `add` new keys appear.
    Lines left alone are copied as they are."""
    defn = defn or CONFIG
    text = [c for c in defn.columns if c["kind"] == "text" and c.get("sample", {}).get("values")][-1]
    values = text["sample"]["values"]
    count = next(c["name"] for c in defn.columns if c["kind"] == "count")
    lines = [line if line.endswith("\n") else line + "\n"
             for line in Path(src).read_text(encoding="utf-8").splitlines(keepends=True)]
    parsed = [next(csv.reader([line])) for line in lines]  # a clean export has no line break in a field
    header = parsed[0]
    t, n_col, key = header.index(text["name"]), header.index(count), header.index(defn.key)

    def line_of(fields):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(fields)
        return buf.getvalue()

    out = [lines[0]]
    for n, (line, fields) in enumerate(zip(lines[1:], parsed[1:]), start=1):
        if n % drop_every == 0:
            continue
        if n % change_every == 0:
            fields = list(fields)
            fields[t] = values[1] if fields[t] != values[1] else values[2]
            fields[n_col] = str(int(float(fields[n_col] or 0)) + 1000)
            line = line_of(fields)
        out.append(line)
    for k, fields in enumerate(parsed[1:add + 1]):
        fields = list(fields)
        fields[key] = f"00000000-0000-4000-8000-{k:012d}"
        out.append(line_of(fields))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_text("".join(out), encoding="utf-8")
