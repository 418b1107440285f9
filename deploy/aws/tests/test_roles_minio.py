"""The three roles of deploy/aws/policies/, proven on MinIO, which enforces
IAM-style user policies (LocalStack's community edition does not).

Each role is a MinIO user holding exactly its policy, rendered from the JSON
files for this run's buckets (without the KMS statements: MinIO's KMS is
server-side and has no IAM actions; nor the loader's Glue statement: MinIO
has no Glue, and the loads here register nothing). The tests run in order on
one table:

  loader      loads ten dates (a checkpoint among its writes), re-runs one
              (nothing written), loads a corrected re-export (files removed
              from the table only logically: no object deleted), gets exit 3
              for a missing export; may not vacuum (exit 2, nothing written)
              nor leave its prefixes;
  read-only   a user who may read the exports and the lake but not write
              (auditor + the loader's export statements): ingest is refused
              before any object is written;
  auditor     history, query, changes give the table's real contents; no
              command of it writes; maintain is refused;
  any role    read-only commands write nothing whatever the table's state
              (missing, orphan file, no checkpoint, definition ahead of the
              table, rejects table gone), even for a role that could write;
  maintainer  vacuum deletes exactly the files the table no longer needs,
              and the table still reads whole.

"Nothing written" means the bucket listing (keys, ETags, modification times)
is the same before and after.
"""

import csv
import io
import json
import shutil

import pytest
import render
from conftest import (
    AWS_DIR,
    assert_denied,
    assert_unchanged,
    new_id,
    normalized,
    snapshot,
)

DATES = [f"2019-04-{d:02d}" for d in range(1, 11)]
NEW_DATE = "2019-04-11"  # generated, never loaded: a load of it has to write
CHECKPOINT = "_delta_log/00000000000000000009.checkpoint.parquet"  # (version + 1) % checkpointInterval == 0
ROWS = 200
TABLE = "shopify_configuration"
COUNTS_SQL = f"SELECT export_date, count(*) AS n FROM {TABLE} GROUP BY export_date ORDER BY export_date"
READ_ONLY = [
    ["history", "--format", "json"],
    ["query", "--sql", COUNTS_SQL, "--format", "csv"],
    ["query", "--sql", f"SELECT count(*) AS n FROM {TABLE}_rejects", "--format", "csv"],
    ["query", "--as-of", "1", "--sql", f"SELECT count(*) AS n FROM {TABLE}", "--format", "csv"],
    ["changes", "--from-version", "1", "--format", "csv"],
]


def parse_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


class World:
    """This module's buckets, users and table, and how to look at them."""

    def __init__(self, minio, shoplake):
        self.minio, self.shoplake = minio, shoplake
        run = new_id()
        self.exports = minio.bucket(f"exports-{run}", versioned=True)
        self.lake = minio.bucket(f"lake-{run}")
        self.values = {"ExportsBucket": self.exports, "ExportsPrefix": "daily", "LakeBucket": self.lake, "LakePrefix": "lake"}
        self.source = f"s3://{self.exports}/daily"
        self.lake_uri = f"s3://{self.lake}/lake"
        self.table_key = f"lake/{TABLE}"
        self.policy = {
            role: render.document(role, self.values, no_kms=True, no_glue=True) for role in ("loader", "auditor", "maintainer")
        }
        exports_read = render.document("loader", self.values, no_kms=True, no_glue=True, only={"ListExports", "ReadExports"})
        self.policy["read-only"] = dict(
            self.policy["auditor"], Statement=self.policy["auditor"]["Statement"] + exports_read["Statement"]
        )
        self.users = {role: minio.user(role, doc) for role, doc in self.policy.items()}
        self.users["root"] = minio.root
        self.expected = {}

    def run(self, role, *args, **kw):
        return self.shoplake(self.minio.endpoint, self.users[role], *args, **kw)

    def ingest(self, role, date, *extra):
        return self.run(role, "ingest", "--date", date, "--source", self.source, "--lake", self.lake_uri, "--format", "json", *extra)

    def read(self, role, args, *extra):
        return self.run(role, *args, "--lake", self.lake_uri, *extra)

    def snap(self):
        return snapshot(self.minio.s3, self.lake)

    def export_rows(self, date):
        body = self.minio.s3.get_object(Bucket=self.exports, Key=f"daily/{date}.csv")["Body"].read().decode()
        return list(csv.reader(io.StringIO(body)))

    def put_export(self, date, rows):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        self.minio.s3.put_object(Bucket=self.exports, Key=f"daily/{date}.csv", Body=buf.getvalue().encode())

    def valid_ids(self, date):
        """The export's ids that must be in the table: application_id not blank."""
        header, *body = self.export_rows(date)
        i, a = header.index("id"), header.index("application_id")
        return {r[i] for r in body if r and r[a].strip()}

    def table_ids(self, date):
        r = self.read("auditor", ["query", "--sql", f"SELECT id FROM {TABLE} WHERE export_date = DATE '{date}'", "--format", "csv"])
        assert r.rc == 0, str(r)
        return {row["id"] for row in parse_csv(r.out)}

    def counts(self, role="auditor"):
        r = self.read(role, ["query", "--sql", COUNTS_SQL, "--format", "csv"])
        assert r.rc == 0, str(r)
        return {row["export_date"]: int(row["n"]) for row in parse_csv(r.out)}

    def versions(self):
        r = self.read("auditor", ["history", "--format", "json"])
        assert r.rc == 0, str(r)
        return [json.loads(line) for line in r.out.splitlines() if line.strip()]

    def assert_whole(self):
        """The table reads every loaded row (as the auditor)."""
        assert self.counts() == self.expected, "the table no longer holds what was loaded"


@pytest.fixture(scope="module")
def world(minio, shoplake):
    w = World(minio, shoplake)
    r = w.run("root", "generate", "--from", DATES[0], "--to", NEW_DATE, "--rows", ROWS, "--out", w.source)
    assert r.rc == 0, str(r)
    return w


def test_each_user_holds_exactly_its_policy(world, minio):
    for role in ("loader", "auditor", "maintainer", "read-only"):
        held = minio.policies_of(world.users[role])
        assert [normalized(p) for p in held.values()] == [normalized(world.policy[role])], f"{role} holds {held}"
    actions = {role: {a for s in doc["Statement"] for a in render.actions(s)} for role, doc in world.policy.items()}
    assert "s3:DeleteObject" not in actions["loader"] and "s3:DeleteObject" in actions["maintainer"]
    assert actions["auditor"] == {"s3:ListBucket", "s3:GetObject"}
    # Vacuum deletes objects; a purge (erase --purge) also lists, reads and deletes their versions.
    # (The loader reads export versions already: s3:GetObjectVersion is not new.)
    assert actions["maintainer"] - actions["loader"] == {"s3:DeleteObject", "s3:ListBucketVersions", "s3:DeleteObjectVersion"}


def test_read_only_commands_on_a_missing_table_write_nothing(world):
    for role in ("auditor", "maintainer"):
        for args in READ_ONLY:
            r = world.read(role, args)
            assert r.rc == 2 and "no Delta table" in r.err, f"{role}: expected 'no Delta table here' (exit 2)\n{r}"
    assert world.snap() == {}, "a read-only command created objects in an empty lake"


def test_loader_needs_to_list_the_exports(world, minio):
    """A grant that looks optional: without ListBucket, a missing export is "access denied", not "retry later"."""
    statements = [s for s in world.policy["loader"]["Statement"] if s["Sid"] != "ListExports"]
    user = minio.user("loader-no-list", dict(world.policy["loader"], Statement=statements))
    # S3 answers a HEAD of a missing key with 403 instead of 404 when the
    # caller may not list the bucket: exit 3 (retry later) would become 2.
    r = world.shoplake(minio.endpoint, user, "ingest", "--date", "2019-05-01", "--source", world.source, "--lake", f"{world.lake_uri}/probe")
    assert r.rc == 2 and "access denied" in r.err.lower(), str(r)
    r = world.ingest("loader", "2019-05-01")
    assert r.rc == 3, str(r)
    assert world.snap() == {}, "a load of a missing export wrote to the lake"


def test_loader_loads_and_never_deletes(world):
    before = {}
    for n, date in enumerate(DATES, start=1):
        r = world.ingest("loader", date)
        assert r.rc == 0, str(r)
        report = r.json()
        assert (report["status"], report["table_version"]) == ("committed", n), str(r)
        assert report["rows_inserted"] == report["rows_valid"] == len(world.valid_ids(date)), str(r)
        world.expected[date] = report["rows_valid"]
        after = world.snap()
        assert set(before) <= set(after), f"a load deleted {sorted(set(before) - set(after))}"
        before = after
    for date in (DATES[0], DATES[-1]):
        assert world.table_ids(date) == world.valid_ids(date), f"{date}: the table's ids are not the export's valid ids"
    world.assert_whole()
    # checkpointInterval 10: the loader's commit of version 9 writes a
    # checkpoint, with PutObject alone (the log cleanup that follows deletes
    # nothing within logRetentionDuration, 3650 days).
    assert f"{world.table_key}/{CHECKPOINT}" in before
    assert f"{world.table_key}/_delta_log/_last_checkpoint" in before


def test_loader_rerun_writes_nothing(world):
    before = world.snap()
    r = world.ingest("loader", DATES[0])
    assert r.rc == 0, str(r)
    report = r.json()
    assert (report["rows_inserted"], report["rows_updated"], report["rows_deleted"]) == (0, 0, 0), str(r)
    assert report["table_version"] == len(DATES), str(r)
    assert_unchanged(before, world.snap(), "an identical re-run")


def test_corrected_reexport_removes_files_only_logically(world):
    date = DATES[-1]
    header, *body = world.export_rows(date)
    a, flag = header.index("application_id"), header.index("autocomplete_enabled")
    valid = [i for i, row in enumerate(body) if row[a].strip()]
    for i in valid[:3]:
        body[i][flag] = "False" if body[i][flag] == "True" else "True"
    body = [row for i, row in enumerate(body) if i not in set(valid[3:5])]
    world.put_export(date, [header, *body])  # a new version of the export (the bucket keeps versions)
    before = world.snap()
    r = world.ingest("loader", date)
    assert r.rc == 0, str(r)
    report = r.json()
    assert (report["rows_updated"], report["rows_deleted"]) == (3, 2), str(r)
    assert report["files_removed"] >= 1, str(r)
    after = world.snap()
    assert set(before) <= set(after), f"the load deleted {sorted(set(before) - set(after))}"
    world.expected[date] -= 2
    world.assert_whole()
    assert world.table_ids(date) == world.valid_ids(date)


def test_loader_gets_retry_later_for_a_missing_export(world):
    before = world.snap()
    r = world.ingest("loader", "2019-05-01")
    assert r.rc == 3 and "no export for 2019-05-01" in r.err, str(r)
    assert_unchanged(before, world.snap(), "a load of a missing export")


def test_loader_may_not_vacuum(world):
    before = world.snap()
    r = world.read("loader", ["maintain", "--vacuum", "--retention-hours", "0", "--force"])
    assert_denied(r, "DELETE", f"{world.table_key}/export_date=")
    assert_unchanged(before, world.snap(), "a vacuum refused to the loader")
    world.assert_whole()


def test_loader_stays_in_its_prefixes(world, minio):
    minio.s3.copy_object(Bucket=world.exports, Key=f"elsewhere/{DATES[0]}.csv",
                         CopySource={"Bucket": world.exports, "Key": f"daily/{DATES[0]}.csv"})
    before = world.snap()
    other_lake = world.run("loader", "ingest", "--date", DATES[0], "--source", world.source, "--lake", f"s3://{world.lake}/elsewhere")
    assert_denied(other_lake, "GET", f"{world.lake}/elsewhere/{TABLE}")
    other_source = world.run("loader", "ingest", "--date", DATES[0], "--source", f"s3://{world.exports}/elsewhere", "--lake", world.lake_uri)
    assert_denied(other_source, "HEAD", f"{world.exports}/elsewhere/{DATES[0]}.csv")
    assert_unchanged(before, world.snap(), "loads outside the loader's prefixes")


def test_read_only_user_is_refused_before_writing(world):
    before = world.snap()
    r = world.ingest("read-only", NEW_DATE)
    assert_denied(r, "PUT", f"{world.table_key}")
    assert "/_delta_log/" in r.err or ".parquet" in r.err, f"the refused PUT's object key is not named\n{r}"
    assert_unchanged(before, world.snap(), "an ingest refused to a read-only user")
    world.assert_whole()


def test_auditor_reads_history_query_and_changes(world):
    before = world.snap()
    history = world.versions()
    loads = [v for v in history if v.get("export_date")]
    assert sorted({v["export_date"] for v in loads}) == DATES
    last = max(loads, key=lambda v: v["version"])
    assert last["version"] == len(DATES) + 1 and last["export_date"] == DATES[-1], last
    assert (last["rows_updated"], last["rows_deleted"]) == (3, 2), last
    world.assert_whole()
    r = world.read("auditor", ["changes", "--from-version", len(DATES) + 1, "--format", "csv"])
    assert r.rc == 0, str(r)
    kinds = sorted(row["change"] for row in parse_csv(r.out))
    assert kinds == ["delete"] * 2 + ["update_postimage"] * 3 + ["update_preimage"] * 3, kinds
    r = world.read("auditor", ["query", "--as-of", len(DATES), "--sql", f"SELECT count(*) AS n FROM {TABLE} WHERE export_date = DATE '{DATES[-1]}'", "--format", "csv"])
    assert r.rc == 0 and parse_csv(r.out) == [{"n": str(world.expected[DATES[-1]] + 2)}], str(r)
    assert_unchanged(before, world.snap(), "the auditor's reads")


def test_auditor_may_not_write(world):
    before = world.snap()
    ingest = world.ingest("auditor", NEW_DATE)
    assert_denied(ingest, "HEAD", f"{world.exports}/daily/{NEW_DATE}.csv")
    checkpoint = world.read("auditor", ["maintain", "--checkpoint"])
    assert_denied(checkpoint, "PUT", f"{world.table_key}/_delta_log/")
    vacuum = world.read("auditor", ["maintain", "--vacuum", "--retention-hours", "0", "--force"])
    assert vacuum.rc == 2 and "access denied" in vacuum.err.lower(), str(vacuum)
    assert_unchanged(before, world.snap(), "the auditor's refused writes")
    world.assert_whole()


def _read_only_everywhere(world, state, *extra, expect_ok=True):
    before = world.snap()
    for role in ("auditor", "maintainer"):
        for args in READ_ONLY:
            r = world.read(role, args, *extra)
            assert "access denied" not in r.err.lower(), f"{state}: {role} tried something it may not\n{r}"
            if expect_ok:
                assert r.rc == 0, f"{state}: {role}\n{r}"
    assert_unchanged(before, world.snap(), f"read-only commands ({state})")


def _take(world, keys):
    """Removes objects (as root) and returns a function that puts them back."""
    s3 = world.minio.s3
    saved = {k: s3.get_object(Bucket=world.lake, Key=k)["Body"].read() for k in keys}
    for k in saved:
        s3.delete_object(Bucket=world.lake, Key=k)

    def restore():
        for k, body in saved.items():
            s3.put_object(Bucket=world.lake, Key=k, Body=body)

    return restore


def test_read_only_commands_write_nothing_on_a_loaded_table(world):
    _read_only_everywhere(world, "loaded table")


def test_read_only_commands_write_nothing_beside_an_orphan_file(world):
    keys = [k for k in world.snap() if k.endswith(".parquet") and "/export_date=" in k]
    orphan = keys[0].rsplit("/", 1)[0] + f"/part-00000-{new_id()}-orphan-c000.snappy.parquet"
    world.minio.s3.copy_object(Bucket=world.lake, Key=orphan, CopySource={"Bucket": world.lake, "Key": keys[0]})
    try:
        _read_only_everywhere(world, "an uncommitted data file, as a killed load leaves")
    finally:
        world.minio.s3.delete_object(Bucket=world.lake, Key=orphan)


def test_read_only_commands_write_nothing_without_a_checkpoint(world):
    log = f"{world.table_key}/_delta_log"
    restore = _take(world, [f"{world.table_key}/{CHECKPOINT}", f"{log}/_last_checkpoint"])
    try:
        _read_only_everywhere(world, "a checkpoint due but missing")
    finally:
        restore()


def test_read_only_commands_write_nothing_when_the_definition_is_ahead(world, shoplake):
    tables = shoplake.workdir / f"tables-{new_id()}"
    shutil.copytree(AWS_DIR.parent.parent / "tables", tables)
    with (tables / TABLE / "table.toml").open("a") as f:
        f.write('\n[[columns]]\nname = "sectest_added_later"\nkind = "text"\n')
    _read_only_everywhere(world, "a nullable column declared, not yet in the table", "--tables", tables, expect_ok=False)


def test_read_only_commands_write_nothing_when_the_rejects_table_is_gone(world):
    restore = _take(world, [k for k in world.snap() if k.startswith(f"{world.table_key}_rejects/")])
    try:
        _read_only_everywhere(world, "the rejects table missing", expect_ok=False)
    finally:
        restore()


def test_maintainer_vacuums_what_the_table_no_longer_needs(world):
    vacuum = ["maintain", "--vacuum", "--retention-hours", "0", "--force"]
    dry = world.read("maintainer", [*vacuum, "--dry-run"])
    assert dry.rc == 0, str(dry)
    listed = {line.strip() for line in dry.out.splitlines() if line.strip().endswith(".parquet")}
    assert listed, f"the corrected re-export left no file to vacuum\n{dry}"
    before = world.snap()
    r = world.read("maintainer", vacuum)
    assert r.rc == 0, str(r)
    after = world.snap()
    deleted = {k.removeprefix(f"{world.table_key}/") for k in set(before) - set(after)}
    assert deleted == listed, f"vacuum deleted {sorted(deleted)}, its dry run listed {sorted(listed)}"
    added = set(after) - set(before)
    assert all(k.startswith(f"{world.table_key}/_delta_log/") and k.endswith(".json") for k in added), added
    world.assert_whole()
    for date in (DATES[0], DATES[-1]):
        assert world.table_ids(date) == world.valid_ids(date)


def test_only_the_maintainer_may_purge(world):
    """A purge deletes files and object versions: the loader, who may write the erasure, is refused the purge
    (exit 2, access denied); the maintainer finishes it, and verify (maintainer) finds nothing."""
    key = {"SHOPLAKE_ERASURE_KEY": "roles-test-erasure-key-0123"}
    shop = min(world.table_ids(DATES[0]))
    erase = ["erase", "--key", shop, "--reason", "roles test", "--purge"]
    r = world.run("loader", *erase, "--lake", world.lake_uri, env=key)
    assert r.rc == 2 and "access denied" in r.err, f"the loader's purge must be refused\n{r}"
    r = world.run("maintainer", *erase, "--lake", world.lake_uri, env=key)
    assert r.rc == 0, str(r)
    r = world.run("maintainer", "erase", "--verify", "--key", shop, "--lake", world.lake_uri)
    assert r.rc == 0, str(r)
    assert shop not in world.table_ids(DATES[0])
