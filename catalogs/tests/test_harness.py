"""Smoke test of the harness: Trino reads a shoplake table registered in moto's Glue.

shoplake generates two days of shopify_configuration exports into MinIO and
back-fills them into a Delta table (versions 0: created, 1 and 2: a day each);
the test registers the table in moto's Glue itself (glue_tables.py, no
shoplake involved), then reads it from Trino: every row as `shoplake query`
reads it, time travel, and the change data feed (the built-in definition
enables it).
"""

import datetime
import json
from types import SimpleNamespace

import pytest
from glue_tables import delta_metadata, table_input

DATABASE = "smoke"
TABLE = "shopify_configuration"
PREFIX = "smoke"  # under s3://raw and s3://lake
DATES = ("2026-01-01", "2026-01-02")


@pytest.fixture(scope="module")
def table(shoplake, s3, glue):
    shoplake("generate", "--from", DATES[0], "--to", DATES[-1], "--rows", 200, "--out", f"s3://raw/{PREFIX}")
    shoplake("backfill", "--from", DATES[0], "--to", DATES[-1],
             "--source", f"s3://raw/{PREFIX}", "--lake", f"s3://lake/{PREFIX}")
    location = f"s3://lake/{PREFIX}/{TABLE}"
    meta = delta_metadata(s3, "lake", f"{PREFIX}/{TABLE}")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    glue.create_table(DatabaseName=DATABASE, TableInput=table_input(TABLE, location, meta))
    return SimpleNamespace(name=f"{DATABASE}.{TABLE}", meta=meta, location=location)


def shoplake_rows(shoplake, sql, *args):
    out = shoplake("query", "--lake", f"s3://lake/{PREFIX}", "--format", "json", "--sql", sql, *args).out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def as_json(value):
    """A value from Trino's client as shoplake's JSON writes it."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def test_trino_counts_the_rows(table, trino, shoplake):
    [[count]] = trino(f"SELECT count(*) FROM {table.name}")
    [expected] = shoplake_rows(shoplake, f"SELECT count(*) AS n FROM {TABLE}")
    assert count == expected["n"] > 0


def test_trino_reads_every_row_as_shoplake_does(table, trino, shoplake):
    got = trino(f"SELECT * FROM {table.name} ORDER BY id, export_date", dicts=True)
    want = shoplake_rows(shoplake, f"SELECT * FROM {TABLE} ORDER BY id, export_date")
    assert [{k: as_json(v) for k, v in row.items()} for row in got] == want


def test_time_travel(table, trino, shoplake):
    # Version 0 is the empty table shoplake creates; each date is then a version.
    assert trino(f"SELECT count(*) FROM {table.name} FOR VERSION AS OF 0") == [[0]]
    [[first]] = trino(f"SELECT count(*) FROM {table.name} FOR VERSION AS OF 1")
    [expected] = shoplake_rows(shoplake, f"SELECT count(*) AS n FROM {TABLE}", "--as-of", "1")
    assert first == expected["n"] > 0


def test_change_data_feed(table, trino, shoplake):
    assert table.meta["configuration"].get("delta.enableChangeDataFeed") == "true", table.meta["configuration"]
    changes = trino(
        f"SELECT _change_type, _commit_version, count(*) FROM TABLE(delta.system.table_changes('{DATABASE}', '{TABLE}', 0))"
        " GROUP BY 1, 2 ORDER BY 2"
    )
    by_date = shoplake_rows(shoplake, f"SELECT export_date, count(*) AS n FROM {TABLE} GROUP BY 1 ORDER BY 1")
    assert changes == [["insert", version, day["n"]] for version, day in enumerate(by_date, start=1)]


def test_servers_started_side_by_side_get_ports_of_their_own():
    """free_port never hands out a port twice: a server not listening yet
    leaves its port free, and Trino once got MinIO's (it failed to bind)."""
    from services import free_port

    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
