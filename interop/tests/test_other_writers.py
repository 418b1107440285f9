"""An identical re-run of a date puts back whatever Python deltalake wrote
to it (issue #14).

Each row of the table stores `_row_hash`, the fingerprint shoplake computed
from its values. Another engine's UPDATE or MERGE rewrites a row's values
but keeps its old `_row_hash`; a re-load that trusted every stored
fingerprint took such a row for unchanged and left the other engine's
values in place. shoplake now trusts stored fingerprints only in files its
own loads added (commit info `shoplake` with `run_id` and `export_date`;
an OPTIMIZE, `dataChange = false`, passes that trust on) and compares the
rows of every other writer's files by value.

Every case below starts from a fresh local table holding one date that
shoplake loaded from a generated export. Python deltalake (1.6.6, the
version bench/run.sh pins) then changes the date, and shoplake re-runs the
very same export. The report must give exact counts, the date must hold
exactly the export's valid rows again (every column, `_row_hash` as hex,
read by `shoplake query` and by Python deltalake), and a second identical
re-run must change nothing.

With the shoplake that trusted every stored fingerprint, the cases whose
other writer changes values while keeping the old `_row_hash` fail (the
re-run reports 0 updated and leaves the other engine's values): the update
of one row, of every row, to null, the overwrite and the merge. The delete
and the append (keys missing or extra: found by key, not by fingerprint),
the optimize and the control pass with either; they guard against the fix
counting rows as changed that are not.
"""
import datetime
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import (
    ALL_COLUMNS,
    Shoplake,
    assert_fingerprints_kept,
    assert_identical_rerun_is_noop,
    assert_load_counts,
    assert_same_rows,
    complete,
    generate,
    normalize,
)
from deltalake import DeltaTable, write_deltalake

DATE = "2019-05-01"
ROWS = 2000


@dataclass
class LoadedDate:
    """A table holding DATE as shoplake loaded it from `source`."""

    sl: Shoplake
    table: str
    source: str
    expected: list  # the date's rows after the load: the export's valid rows

    @property
    def valid(self):
        return len(self.expected)


@pytest.fixture(scope="module")
def export(work, shoplake_bin):
    """The directory holding the export of DATE."""
    return str(generate(shoplake_bin, work / f"other-writers-{uuid.uuid4().hex[:10]}" / "raw", DATE, DATE, ROWS,
                        seed=14))


@pytest.fixture
def loaded(export, work, shoplake_bin):
    """A fresh table with DATE loaded by shoplake from the export."""
    sl = Shoplake(shoplake_bin)
    table = str(work / f"other-writers-{uuid.uuid4().hex[:10]}" / "shopify_configuration")
    report = sl.ingest(table, export, DATE)
    t = LoadedDate(sl, table, export, date_rows(sl, table))
    assert report["rows_inserted"] == report["rows_valid"] == t.valid > ROWS * 0.9, report
    return t


# ---------------------------------------------------------------- reading the date


def date_rows(sl, table):
    """DATE's rows as `shoplake query` reads them, sorted by id."""
    return complete(sl.rows(table, where=f"export_date = '{DATE}'"), ALL_COLUMNS)


def python_table(table):
    """The table's rows of DATE as Python deltalake reads them (pyarrow)."""
    return DeltaTable(table).to_pyarrow_table(filters=[("export_date", "=", datetime.date.fromisoformat(DATE))])


def python_rows(table):
    """DATE's rows as Python deltalake reads them, as shoplake's JSON gives them."""
    rows = [{k: normalize(v) for k, v in r.items()} for r in python_table(table).to_pylist()]
    return sorted(rows, key=lambda r: r["id"])


def date_files(table):
    """The active data files of DATE."""
    actions = pa.table(DeltaTable(table).get_add_actions(flatten=True)).to_pylist()
    return [a["path"] for a in actions if str(a["partition.export_date"]) == DATE]


def commit_file_actions(table, version):
    """The add and remove actions of one commit of a local table."""
    log = Path(table) / "_delta_log" / f"{version:020d}.json"
    actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [a.get("add") or a["remove"] for a in actions if "add" in a or "remove" in a]


def pick(t, k, where=lambda row: True):
    """`k` of the date's rows meeting `where`, spread over the id range."""
    rows = [r for r in t.expected if where(r)]
    assert len(rows) >= k, f"only {len(rows)} rows fit"
    return rows[:: len(rows) // k][:k]


def id_list(rows):
    return ", ".join(f"'{r['id']}'" for r in rows)


def new_id(n):
    """An id the generator never makes."""
    return f"00000000-0000-4000-9000-{n:012d}"


def assert_date_is_the_export(t, what):
    assert_same_rows(date_rows(t.sl, t.table), t.expected, what, names=("table", "export"))
    assert_same_rows(python_rows(t.table), t.expected, f"{what}, read by Python deltalake",
                     names=("Python deltalake", "export"))


# ---------------------------------------------------------------- what Python deltalake does
# Each takes the loaded date, changes it through Python deltalake, and
# returns what the identical re-run must count: (inserted, updated, deleted).


def update_one_row(t):
    """`DeltaTable.update` of one row's `shop_domain`."""
    row = pick(t, 1)[0]
    DeltaTable(t.table).update(new_values={"shop_domain": "changed-by-python.example"},
                               predicate=f"export_date = '{DATE}' AND id = '{row['id']}'")
    return 0, 1, 0


def update_every_row(t):
    """`DeltaTable.update` of `install_channel` in every row of the date."""
    assert not any(r["install_channel"] == "set_by_python" for r in t.expected)
    DeltaTable(t.table).update(new_values={"install_channel": "set_by_python"}, predicate=f"export_date = '{DATE}'")
    return 0, t.valid, 0


def update_to_null(t):
    """`DeltaTable.update` setting `install_channel` to null in 5 rows and
    `index_prefix` in 4 others, where the export has values."""
    channel = pick(t, 5, lambda r: r["install_channel"] is not None)
    prefix = pick(t, 4, lambda r: r["index_prefix"] is not None and r not in channel)
    DeltaTable(t.table).update(updates={"install_channel": "NULL"}, predicate=f"id IN ({id_list(channel)})")
    DeltaTable(t.table).update(updates={"index_prefix": "NULL"}, predicate=f"id IN ({id_list(prefix)})")
    return 0, len(channel) + len(prefix), 0


def delete_rows(t):
    """`DeltaTable.delete` of 12 rows."""
    DeltaTable(t.table).delete(f"export_date = '{DATE}' AND id IN ({id_list(pick(t, 12))})")
    return 12, 0, 0


def append_rows(t):
    """`write_deltalake(mode="append")` of 8 shops the export does not have:
    5 with the `_row_hash` of the row they were copied from, 3 without one."""
    current = python_table(t.table)
    rows = current.to_pylist()[::97][:8]
    for n, row in enumerate(rows):
        row["id"] = new_id(n)
        if n >= 5:
            row["_row_hash"] = None
    write_deltalake(t.table, pa.Table.from_pylist(rows, schema=current.schema), mode="append")
    return 0, 0, len(rows)


def overwrite_date(t):
    """`write_deltalake(mode="overwrite", predicate=date)` replacing the date
    with the export's rows less 6, 9 of them with another
    `nbr_merchandised_queries` (`_row_hash` kept), and 4 more shops."""
    current = python_table(t.table)
    rows = current.to_pylist()
    removed = set(range(0, len(rows), len(rows) // 6)[:6])
    changed = set(range(5, len(rows), len(rows) // 9)[:9]) - removed
    added = [dict(rows[n], id=new_id(100 + n)) for n in (3, 4, 7, 8)]
    kept = []
    for n, row in enumerate(rows):
        if n in removed:
            continue
        if n in changed:
            row = dict(row, nbr_merchandised_queries=(row["nbr_merchandised_queries"] or 0) + 1000)
        kept.append(row)
    write_deltalake(t.table, pa.Table.from_pylist(kept + added, schema=current.schema), mode="overwrite",
                    predicate=f"export_date = '{DATE}'")
    return len(removed), len(changed), len(added)


def merge_rows(t):
    """`DeltaTable.merge(...).when_matched_update(...)` giving 10 rows another
    `shop_domain` and `nbr_metafields`."""
    rows = pick(t, 10)
    source = pa.table({
        "id": [r["id"] for r in rows],
        "export_date": pa.array([datetime.date.fromisoformat(DATE)] * len(rows), pa.date32()),
        "shop_domain": [f"merged-by-python-{n}.example" for n in range(len(rows))],
        "nbr_metafields": pa.array([4242] * len(rows), pa.int64()),
    })
    (
        DeltaTable(t.table)
        .merge(source, "t.id = s.id AND t.export_date = s.export_date", source_alias="s", target_alias="t")
        .when_matched_update(updates={"shop_domain": "s.shop_domain", "nbr_metafields": "s.nbr_metafields"})
        .execute()
    )
    return 0, len(rows), 0


OTHER_WRITES = [update_one_row, update_every_row, update_to_null, delete_rows, append_rows, overwrite_date,
                merge_rows]


@pytest.mark.parametrize("other_write", OTHER_WRITES, ids=lambda f: f.__name__)
def test_identical_rerun_puts_back_what_python_deltalake_wrote(loaded, other_write):
    """Python deltalake changes the date (keeping the stored `_row_hash` of
    every row it leaves); the identical re-run counts exactly that change,
    leaves the date equal to the export, and a second re-run does nothing."""
    t = loaded
    before = t.sl.version(t.table)
    inserted, updated, deleted = other_write(t)
    their_version = t.sl.version(t.table)
    assert their_version > before, "Python deltalake committed nothing"
    their_rows = python_rows(t.table)
    assert their_rows != t.expected, "Python deltalake changed nothing"
    assert_fingerprints_kept(their_rows, t.expected, "Python deltalake")

    report = t.sl.ingest(t.table, t.source, DATE)
    assert_load_counts(report, inserted=inserted, updated=updated, deleted=deleted)
    assert report["table_version"] == t.sl.version(t.table) == their_version + 1, report
    assert_date_is_the_export(t, f"after {other_write.__name__} and the re-run")

    assert_identical_rerun_is_noop(t.sl, t.table, t.source, DATE)
    assert_date_is_the_export(t, f"after {other_write.__name__} and a second re-run")


def test_identical_rerun_without_another_writer_is_a_noop(loaded):
    """The control: shoplake alone, nothing to do."""
    assert_identical_rerun_is_noop(loaded.sl, loaded.table, loaded.source, DATE)
    assert_date_is_the_export(loaded, "after the identical re-run")


def test_identical_rerun_after_python_optimize_is_a_noop(loaded):
    """Python deltalake's OPTIMIZE rewrites the date's files without changing
    a row (`dataChange = false`): first a Z-order into small files, then a
    compaction of those into one (an OPTIMIZE of an OPTIMIZE). The files each
    adds carry shoplake's fingerprints on, and after each the re-run has
    nothing to do."""
    t = loaded
    optimizations = [
        ("z-order into small files", lambda dt: dt.optimize.z_order(["id"], target_size=32 * 1024), lambda n: n >= 2),
        ("compaction", lambda dt: dt.optimize.compact(), lambda n: n == 1),
    ]
    for what, optimize, files_wanted in optimizations:
        before = t.sl.version(t.table)
        files = date_files(t.table)
        metrics = optimize(DeltaTable(t.table))
        assert t.sl.version(t.table) == before + 1, f"the {what} committed nothing: {metrics}"
        after = date_files(t.table)
        assert not set(files) & set(after) and files_wanted(len(after)), f"{what}: {files} -> {after}"
        actions = commit_file_actions(t.table, before + 1)
        assert actions and not any(a["dataChange"] for a in actions), actions

        assert_identical_rerun_is_noop(t.sl, t.table, t.source, DATE)
        assert_date_is_the_export(t, f"after the {what} and the re-run")
