"""shoplake registers its tables in Glue (moto) and Trino reads them through it.

Every built-in table is back-filled with `--catalog glue` into MinIO; Trino
(Delta Lake connector, hive.metastore=glue) then finds each through the
entries shoplake wrote and reads what `shoplake query` reads. The cases of
issue #29: the first load registers, a second changes nothing in the catalog,
an added column updates the entry (and Trino reads it), a failed registration
exits 6 and the next run repairs it, a role without glue:CreateTable gets
exit 2 and the load's commit stays; time travel and the change feed through
Trino equal `shoplake query --as-of` and `shoplake changes`.
"""

import datetime
import decimal
import json
import shutil
from pathlib import Path

import pytest
from glue_tables import delta_metadata, table_input

DATABASE = "shop_lake"
PREFIX = "glue"  # under s3://raw and s3://lake
LAKE = f"s3://lake/{PREFIX}"
RAW = f"s3://raw/{PREFIX}"
DATES = ("2026-02-01", "2026-02-02")
CATALOG = ("--catalog", "glue", "--glue-database", DATABASE)
REPO_TABLES = Path(__file__).resolve().parents[2] / "tables"


def built_in_tables(shoplake):
    listed = json.loads(shoplake("tables", "--format", "json").out)
    return sorted(t["name"] for t in (listed["tables"] if isinstance(listed, dict) else listed))


@pytest.fixture(scope="module")
def lake(shoplake):
    shoplake("generate", "--all-tables", "--from", DATES[0], "--to", DATES[-1], "--rows", 60, "--dirty", "--out", RAW)
    result = shoplake("backfill", "--all-tables", "--from", DATES[0], "--to", DATES[-1],
                      "--source", RAW, "--lake", LAKE, "--max-reject-ratio", "0.2", *CATALOG)
    return built_in_tables(shoplake), result


def rows_of(shoplake, table, *args, lake=LAKE, tables=None):
    extra = ("--tables", tables) if tables else ()
    out = shoplake("query", "--lake", lake, "--format", "json", "--sql", f"SELECT * FROM {table}", *args, *extra).out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def as_json(value):
    """A value from Trino's client as shoplake's JSON writes it."""
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def same(value, theirs):
    """shoplake's JSON value against Trino's (timestamps compared as instants)."""
    if isinstance(theirs, datetime.datetime):
        if value is None:
            return False
        text = value.replace("Z", "+00:00").replace(" ", "T")
        mine = datetime.datetime.fromisoformat(text)
        if (mine.tzinfo is None) != (theirs.tzinfo is None):
            mine, theirs = mine.replace(tzinfo=None), theirs.replace(tzinfo=None)
        return mine == theirs
    if isinstance(theirs, float) and isinstance(value, (int, float)):
        return abs(theirs - value) < 1e-9
    if isinstance(theirs, str) and isinstance(value, (int, float)):
        return decimal.Decimal(theirs) == decimal.Decimal(str(value))
    return value == theirs


def assert_same_rows(trino_rows, shoplake_rows, what):
    assert len(trino_rows) == len(shoplake_rows), what
    key = lambda row: json.dumps({k: str(v) for k, v in row.items()}, sort_keys=True)
    theirs = sorted(({k: as_json(v) for k, v in r.items()} for r in trino_rows), key=key)
    ours = sorted(shoplake_rows, key=key)
    # Sorted by text, timestamps may order differently: match each Trino row to one of ours.
    unmatched = list(ours)
    for row in theirs:
        match = next((m for m in unmatched if m.keys() == row.keys() and all(same(m[k], row[k]) for k in row)), None)
        assert match is not None, f"{what}: Trino's row {row} is not one of shoplake's (e.g. {unmatched[:1]})"
        unmatched.remove(match)


def test_the_first_load_registers_every_table_in_the_shape_readers_read(lake, glue, s3):
    tables, _ = lake
    assert len(tables) >= 6, tables
    for table in tables:
        for name in (table, f"{table}_rejects"):
            entry = glue.get_table(DatabaseName=DATABASE, Name=name)["Table"]
            location = f"{LAKE}/{name}"
            # The shape the harness's own entry has (glue_tables.py, written from FACTS.md, not by shoplake).
            reference = table_input(name, location, delta_metadata(s3, "lake", f"{PREFIX}/{name}"))
            assert entry["TableType"] == reference["TableType"] == "EXTERNAL_TABLE", name
            for key, value in reference["Parameters"].items():
                assert entry["Parameters"].get(key) == value, (name, key)
            descriptor = entry["StorageDescriptor"]
            assert descriptor["Location"] == location, name
            assert descriptor["SerdeInfo"]["Parameters"] == {"path": location, "serialization.format": "1"}, name
            assert [(c["Name"], c["Type"]) for c in descriptor["Columns"]] == [
                (c["Name"], c["Type"]) for c in reference["StorageDescriptor"]["Columns"]
            ], name
            assert not entry.get("PartitionKeys"), name


def test_trino_reads_every_table_as_shoplake_query_does(lake, trino, shoplake):
    tables, _ = lake
    for table in tables:
        for name in (table, f"{table}_rejects"):
            got = trino(f"SELECT * FROM {DATABASE}.{name}", dicts=True)
            assert_same_rows(got, rows_of(shoplake, name), name)
        assert trino(f"SELECT count(*) FROM {DATABASE}.{table}") != [[0]], f"{table} has rows"


def test_time_travel_and_the_change_feed_equal_shoplakes(lake, trino, shoplake):
    table = "shopify_configuration"
    for version in (1, 2):
        got = trino(f"SELECT * FROM {DATABASE}.{table} FOR VERSION AS OF {version}", dicts=True)
        assert_same_rows(got, rows_of(shoplake, table, "--as-of", str(version)), f"version {version}")
    changes = trino(
        "SELECT _change_type, _commit_version, count(*) FROM "
        f"TABLE(delta.system.table_changes('{DATABASE}', '{table}', 0)) GROUP BY 1, 2 ORDER BY 2, 1"
    )
    out = shoplake("changes", "--lake", LAKE, "--table-name", table, "--from-version", "1", "--format", "json").out
    ours = {}
    for line in filter(str.strip, out.splitlines()):
        change = json.loads(line)
        group = (change["change"], change["version"])
        ours[group] = ours.get(group, 0) + 1
    assert changes == [[kind, version, n] for (kind, version), n in sorted(ours.items(), key=lambda g: (g[0][1], g[0][0]))]


def test_a_second_load_changes_nothing_in_the_catalog(lake, glue, shoplake):
    before = {n: glue.get_table(DatabaseName=DATABASE, Name=n)["Table"] for n in ("shopify_configuration", "shopify_configuration_rejects")}
    # The identical re-run, and a load of a new date with the same columns.
    shoplake("ingest", "--date", DATES[-1], "--source", RAW, "--lake", LAKE, *CATALOG)
    shoplake("generate", "--from", "2026-02-03", "--to", "2026-02-03", "--rows", 60, "--out", RAW)
    shoplake("ingest", "--date", "2026-02-03", "--source", RAW, "--lake", LAKE, *CATALOG)
    for name, entry in before.items():
        after = glue.get_table(DatabaseName=DATABASE, Name=name)["Table"]
        assert after.get("VersionId") == entry.get("VersionId"), name
        assert after.get("UpdateTime") == entry.get("UpdateTime"), name
        versions = glue.get_table_versions(DatabaseName=DATABASE, TableName=name)["TableVersions"]
        assert len(versions) == 1, f"{name}: written once, never updated ({len(versions)} versions)"
    diff = shoplake("catalog", "diff", "--lake", LAKE, *CATALOG).out
    assert diff.count("in sync") == 2, diff


def test_an_added_column_updates_the_entry_and_trino_reads_it(lake, glue, trino, shoplake, tmp):
    tables = tmp / "tables-with-note"
    if not tables.exists():
        shutil.copytree(REPO_TABLES, tables)
        definition = tables / "shopify_configuration" / "table.toml"
        definition.write_text(definition.read_text() + '\n[[columns]]\nname = "note"\nkind = "text"\n')
    day = "2026-02-04"
    shoplake("generate", "--tables", tables, "--from", day, "--to", day, "--rows", 60, "--out", RAW)
    before = glue.get_table(DatabaseName=DATABASE, Name="shopify_configuration")["Table"]
    newest = shoplake("history", "--lake", LAKE, "--format", "json", "--limit", "1").out.splitlines()[0]
    old_version = int(json.loads(newest)["version"])
    shoplake("ingest", "--tables", tables, "--date", day, "--source", RAW, "--lake", LAKE, *CATALOG)
    after = glue.get_table(DatabaseName=DATABASE, Name="shopify_configuration")["Table"]
    columns = [(c["Name"], c["Type"]) for c in after["StorageDescriptor"]["Columns"]]
    assert ("note", "string") in columns and ("note", "string") not in [
        (c["Name"], c["Type"]) for c in before["StorageDescriptor"]["Columns"]]
    got = trino(f"SELECT * FROM {DATABASE}.shopify_configuration", dicts=True)
    assert_same_rows(got, rows_of(shoplake, "shopify_configuration", tables=tables), "after the added column")
    assert trino(f"SELECT count(note) FROM {DATABASE}.shopify_configuration WHERE export_date = DATE '{day}'") != [[0]]
    # The version before the change reads without it, in Trino as in shoplake.
    old = trino(f"SELECT * FROM {DATABASE}.shopify_configuration FOR VERSION AS OF {old_version}", dicts=True)
    assert old and "note" not in old[0]
    # And a second run of it changes nothing more.
    shoplake("ingest", "--tables", tables, "--date", day, "--source", RAW, "--lake", LAKE, *CATALOG)
    again = glue.get_table(DatabaseName=DATABASE, Name="shopify_configuration")["Table"]
    assert again.get("VersionId") == after.get("VersionId")


def test_a_failed_registration_exits_6_and_the_next_run_repairs_it(stack, glue, trino, shoplake):
    lake, database = f"s3://lake/{PREFIX}-repair", "shop_repair"
    catalog = ("--catalog", "glue", "--glue-database", database)
    shoplake("generate", "--from", DATES[0], "--to", DATES[0], "--rows", 60, "--out", RAW)
    failed = shoplake("ingest", "--date", DATES[0], "--source", RAW, "--lake", lake, *catalog,
                      glue_endpoint="http://127.0.0.1:9", check=False)
    assert failed.rc == 6, str(failed)
    assert "the load committed, but the catalog was not updated" in failed.err
    assert rows_of(shoplake, "shopify_configuration", lake=lake), "the data committed"
    assert database not in [d["Name"] for d in glue.get_databases()["DatabaseList"]]
    # The retry: the date is identical (nothing loaded again), the entry is written.
    shoplake("ingest", "--date", DATES[0], "--source", RAW, "--lake", lake, *catalog)
    got = trino(f"SELECT * FROM {database}.shopify_configuration", dicts=True)
    assert_same_rows(got, rows_of(shoplake, "shopify_configuration", lake=lake), "after the repair")


def test_a_role_without_create_table_exits_2_and_keeps_the_commit(stack, glue_users, shoplake):
    lake = f"s3://lake/{PREFIX}-iam"
    catalog = ("--catalog", "glue", "--glue-database", glue_users.database)
    shoplake("generate", "--from", DATES[0], "--to", DATES[0], "--rows", 60, "--out", RAW)
    denied = shoplake("ingest", "--date", DATES[0], "--source", RAW, "--lake", lake, *catalog,
                      creds=glue_users.no_create, glue_endpoint=glue_users.endpoint, check=False)
    assert denied.rc == 2, str(denied)
    assert "glue:CreateTable" in denied.err and "AccessDeniedException" in denied.err, denied.err
    assert "the load committed" in denied.err
    assert rows_of(shoplake, "shopify_configuration", lake=lake), "the data committed"
    # The case beside it: the loader's whole statement registers (the retry finds the date identical).
    shoplake("ingest", "--date", DATES[0], "--source", RAW, "--lake", lake, *catalog,
             creds=glue_users.writer, glue_endpoint=glue_users.endpoint)
    diff = shoplake("catalog", "diff", "--lake", lake, *catalog, creds=glue_users.writer,
                    glue_endpoint=glue_users.endpoint).out
    assert diff.count("in sync") == 2, diff
