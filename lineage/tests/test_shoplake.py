"""shoplake's OpenLineage events, for real (issue #18): the built binary loads
generated exports with --lineage-file / --lineage-url (or their environment
variables) in each scenario of lineage/README.md; every event is validated
(olvalidate.py) and checked against what the run did. A binary without
--lineage-file fails every test here, never a skip. Validation:
openlineage-python's classes always, the pinned JSON schemas too only when a
copy is installed (olvalidate.Validator; the summary says which ran).
Set SHOPLAKE_BIN, LINEAGE_WORK (the work folder), LINEAGE_MAX_DELAY (10 s),
LINEAGE_ABORT_ROWS (1000000).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import olvalidate

CACHE = Path(os.environ.get("SHOPLAKE_CACHE") or Path.home() / ".cache" / "shoplake")
BIN = Path(os.environ.get("SHOPLAKE_BIN") or Path(os.environ.get("CARGO_TARGET_DIR") or CACHE / "target") / "debug" / "shoplake")
TABLES = REPO / "tables"
TABLE = "shopify_configuration"
DATES = ["2019-04-01", "2019-04-02", "2019-04-03"]
MISSING_DATE = "2019-04-05"
BIG_DATE = "2019-04-09"
MAX_DELAY = float(os.environ.get("LINEAGE_MAX_DELAY", "10"))
ABORT_ROWS = int(os.environ.get("LINEAGE_ABORT_ROWS", "1000000"))
KEY = "lineage-test-key-" + uuid.uuid4().hex
PARENT = ("airflow-prod", "shoplake_shopify_configuration.ingest", str(uuid.uuid4()))
ROOT = ("airflow-prod", "shoplake_shopify_configuration", str(uuid.uuid4()))
WARNING = re.compile(r"(?i)lineage")
SCRUBBED = ("SHOPLAKE_LINEAGE_FILE", "SHOPLAKE_SOURCE", "SHOPLAKE_LAKE", "SHOPLAKE_TABLE", "SHOPLAKE_TABLE_NAME", "SHOPLAKE_TABLES")


@dataclass
class Run:
    name: str
    rc: int
    seconds: float
    out: str
    err: str
    lines: list[str]
    received: list[dict] | None = None
    signalled: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]

    @property
    def types(self) -> list[str]:
        return [e.get("eventType") for e in self.events]

    def reports(self) -> list[dict]:
        """The run reports of stdout (--format json): one, a back-fill's or --all-tables' list."""
        data = json.loads(self.out)
        return data.get("dates") or data.get("tables") or [data]

    def runs(self) -> dict[str, list[dict]]:
        by_run: dict[str, list[dict]] = {}
        for event in self.events:
            by_run.setdefault(event["run"]["runId"], []).append(event)
        return by_run

    def describe(self) -> str:
        return f"{self.name}: exit {self.rc} in {self.seconds:.1f} s; events {self.types}; stderr tail:\n{self.err[-1500:]}"


# --- helpers ---------------------------------------------------------------------------------------
def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE_") and k not in SCRUBBED}
    env.update(RUST_LOG="warn", **extra)
    return env


class Receiver:
    """lineage/receiver.py in a process of its own; stopped by PID."""

    def __init__(self, work: Path, name: str, mode: str):
        self.record = work / f"{name}.received.jsonl"
        port_file = work / f"{name}.port"
        with open(work / f"{name}.receiver.log", "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "receiver.py"), mode, str(self.record), str(port_file), "--hang", "120"], stderr=log
            )
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"receiver {mode} did not start: {(work / f'{name}.receiver.log').read_text()}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"

    def stop(self) -> list[dict]:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        return [json.loads(line) for line in self.record.read_text().splitlines()] if self.record.exists() else []


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lake:
    """Generated exports and one shoplake invocation per scenario, in a work folder."""

    def __init__(self, work: Path):
        self.work = work
        self.raw = work / "raw"
        self.runs: dict[str, Run] = {}

    def shoplake(self, name: str, args: list[str], env: dict | None = None, lineage: bool = True,
                 url: str | None = None, stop_after_start: int | None = None) -> Run:
        path = self.work / f"{name}.events.jsonl"
        command = [str(BIN), *args, "--format", "json"]
        if lineage:
            command += ["--lineage-file", str(path)]
        if url:
            command += ["--lineage-url", url]
        out, err = self.work / f"{name}.out", self.work / f"{name}.err"
        started = time.monotonic()
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen(command, stdout=o, stderr=e, env=env or clean_env(OPENLINEAGE_API_KEY=KEY), cwd=self.work)
            signalled = None
            if stop_after_start is not None:
                signalled = self._signal_after_start(proc, path, stop_after_start)
            try:
                rc = proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        seconds = time.monotonic() - started
        lines = path.read_text().splitlines() if path.is_file() else []
        run = Run(name, rc, seconds, out.read_text(), err.read_text(), lines, signalled=signalled)
        self.runs[name] = run
        return run

    @staticmethod
    def _signal_after_start(proc: subprocess.Popen, path: Path, signum: int) -> bool:
        """Sends signum once the START event is written and the load is reading: True if it was still running."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if path.is_file() and '"START"' in path.read_text():
                break
            time.sleep(0.02)
        time.sleep(0.3)
        if proc.poll() is not None:
            return False
        proc.send_signal(signum)
        return True

    def generate(self, out: Path, first: str, last: str, rows: int, all_tables: bool = True) -> None:
        args = [str(BIN), "generate", "--from", first, "--to", last, "--rows", str(rows), "--out", str(out), "--tables", str(TABLES)]
        subprocess.run(args + (["--all-tables", "--dirty"] if all_tables else []), check=True, capture_output=True, env=clean_env())

    def ingest(self, date: str, lake: str, source: Path | None = None) -> list[str]:
        return ["ingest", "--date", date, "--source", str(source or self.raw), "--lake", str(self.work / lake),
                "--tables", str(TABLES), "--table-name", TABLE]


def table_defs() -> dict[str, dict]:
    return {tomllib.loads((d / "table.toml").read_text())["name"]: d for d in sorted(TABLES.iterdir()) if (d / "table.toml").is_file()}


def checks_of(table: str) -> list[dict]:
    path = table_defs()[table] / "checks.toml"
    return tomllib.loads(path.read_text()).get("checks", []) if path.is_file() else []


def facets(dataset: dict, group: str = "facets") -> dict:
    return dataset.get(group) or {}


def date_of(timestamp: str) -> str:
    return timestamp[:10]


def delta_commit(table: str, version: int) -> tuple[list[dict], datetime]:
    """The files a Delta version added, and its commit time."""
    log = (Path(table) / "_delta_log" / f"{version:020d}.json").read_text()
    actions = [json.loads(line) for line in log.splitlines() if line.strip()]
    (info,) = [a["commitInfo"] for a in actions if "commitInfo" in a]
    return [a["add"] for a in actions if "add" in a], datetime.fromtimestamp(info["timestamp"] / 1000, tz=UTC)


def event_time(event: dict) -> datetime:
    return datetime.fromisoformat(event["eventTime"])


# --- the scenarios -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def binary() -> Path:
    if not BIN.is_file():
        pytest.fail(f"no shoplake binary at {BIN} (build it, or set SHOPLAKE_BIN)")
    for command in ("ingest", "backfill"):
        text = subprocess.run([str(BIN), command, "--help"], check=False, capture_output=True, text=True).stdout
        missing = [o for o in ("--lineage-file", "--lineage-url", "--lineage-namespace") if o not in text]
        if missing:
            pytest.fail(f"`shoplake {command} --help` has no {', '.join(missing)} yet (issue #18): the lineage scenarios cannot run")
    return BIN


@pytest.fixture(scope="session")
def lake(binary, tmp_path_factory) -> Lake:
    work = Path(os.environ["LINEAGE_WORK"]) if os.environ.get("LINEAGE_WORK") else tmp_path_factory.mktemp("lineage")
    work.mkdir(parents=True, exist_ok=True)
    lake = Lake(work)
    lake.generate(lake.raw, DATES[0], DATES[-1], 200)
    bad = work / "badraw"
    bad.mkdir(exist_ok=True)
    text = (lake.raw / f"{DATES[1]}.csv").read_text()
    header, rest = text.split("\n", 1)
    assert "index_prefix" in header
    (bad / f"{DATES[1]}.csv").write_text(header.replace("index_prefix", "index_prefx") + "\n" + rest)
    return lake


@pytest.fixture(scope="session")
def success(lake) -> Run:
    receiver = Receiver(lake.work, "success", "ok")
    try:
        run = lake.shoplake("success", lake.ingest(DATES[0], "lake"), url=receiver.url)
    finally:
        received = receiver.stop()
    run.received = received
    return run


@pytest.fixture(scope="session")
def rerun(lake, success) -> Run:
    return lake.shoplake("rerun", lake.ingest(DATES[0], "lake"))


@pytest.fixture(scope="session")
def missing(lake, success) -> Run:
    return lake.shoplake("missing", lake.ingest(MISSING_DATE, "lake"))


@pytest.fixture(scope="session")
def bad_header(lake, success) -> Run:
    return lake.shoplake("bad_header", lake.ingest(DATES[1], "lake", source=lake.work / "badraw"))


@pytest.fixture(scope="session", params=["SIGTERM", "SIGINT"])
def abort(lake, request) -> Run:
    big = lake.work / "big"
    if not (big / f"{BIG_DATE}.csv").exists():
        lake.generate(big, BIG_DATE, BIG_DATE, ABORT_ROWS, all_tables=False)
    name = f"abort_{request.param}"
    return lake.shoplake(name, lake.ingest(BIG_DATE, name, source=big), stop_after_start=getattr(signal, request.param))


@pytest.fixture(scope="session")
def backfill(lake) -> Run:
    args = ["backfill", "--from", DATES[0], "--to", DATES[-1], "--source", str(lake.raw), "--lake", str(lake.work / "lake_backfill"),
            "--tables", str(TABLES), "--table-name", TABLE]
    return lake.shoplake("backfill", args)


@pytest.fixture(scope="session")
def all_tables(lake) -> Run:
    args = ["ingest", "--date", DATES[0], "--source", str(lake.raw), "--lake", str(lake.work / "lake_all"), "--tables", str(TABLES),
            "--all-tables", "--lineage-namespace", "shoplake-flag-test"]
    return lake.shoplake("all_tables", args)


def parent_env(lake: Lake, name: str, receiver: Receiver, parent: tuple, root: tuple | None) -> dict:
    env = clean_env(
        SHOPLAKE_LINEAGE_FILE=str(lake.work / f"{name}.events.jsonl"), OPENLINEAGE_URL=receiver.url, OPENLINEAGE_API_KEY=KEY,
        OPENLINEAGE_NAMESPACE="shoplake-env-test", OPENLINEAGE_PARENT_ID="/".join(parent),
    )
    if root is not None:
        env["OPENLINEAGE_ROOT_PARENT_ID"] = "/".join(root)
    return env


@pytest.fixture(scope="session")
def from_env(lake) -> Run:
    """Every setting from the environment, as the Airflow DAG passes them (no lineage flag)."""
    receiver = Receiver(lake.work, "from_env", "ok")
    try:
        run = lake.shoplake("from_env", lake.ingest(DATES[1], "lake_env"), env=parent_env(lake, "from_env", receiver, PARENT, ROOT), lineage=False)
    finally:
        received = receiver.stop()
    run.received = received
    return run


@pytest.fixture(scope="session")
def slash_namespace(lake) -> Run:
    """A parent namespace with slashes (airflow://prod): the id splits at its last two '/'. No
    OPENLINEAGE_ROOT_PARENT_ID: the parent is the root too."""
    receiver = Receiver(lake.work, "slash_namespace", "ok")
    parent = ("airflow://prod", "dag.task", str(uuid.uuid4()))
    try:
        env = parent_env(lake, "slash_namespace", receiver, parent, None)
        run = lake.shoplake("slash_namespace", lake.ingest(DATES[2], "lake_slash"), env=env, lineage=False)
    finally:
        receiver.stop()
    run.extra["parent"] = parent
    return run


@pytest.fixture(scope="session")
def baseline(lake) -> Run:
    """The same first load with the file transport only: what a failing transport may add to."""
    return lake.shoplake("baseline", lake.ingest(DATES[0], "lake_baseline"))


@pytest.fixture(scope="session", params=["down", "500", "hang"])
def failing_http(lake, baseline, request) -> Run:
    mode = request.param
    name = f"http_{mode}"
    receiver = Receiver(lake.work, name, mode) if mode != "down" else None
    url = receiver.url if receiver else f"http://127.0.0.1:{free_port()}"
    try:
        run = lake.shoplake(name, lake.ingest(DATES[0], f"lake_{name}"), url=url)
    finally:
        received = receiver.stop() if receiver else None
    run.received = received
    return run


@pytest.fixture(scope="session")
def bad_file(lake, baseline) -> Run:
    """--lineage-file naming a directory: the file transport fails."""
    (lake.work / "bad_file.events.jsonl").mkdir(exist_ok=True)
    return lake.shoplake("bad_file", lake.ingest(DATES[0], "lake_bad_file"))


@pytest.fixture(scope="session")
def erasure(lake) -> Run:
    """A shop erased and purged from a lake of its own: one run, job <table>.erase."""
    header, first = (lake.raw / f"{DATES[0]}.csv").read_text().split("\n")[:2]
    assert header.split(",")[0] == "id", header
    shop = first.split(",")[0]
    env = clean_env(SHOPLAKE_ERASURE_KEY="lineage-test-erasure-key")
    loaded = subprocess.run([str(BIN), *lake.ingest(DATES[0], "lake_erase")], check=False, env=env, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    args = ["erase", "--key", shop, "--reason", "lineage test", "--purge", "--lake", str(lake.work / "lake_erase"),
            "--tables", str(TABLES), "--table-name", TABLE]
    run = lake.shoplake("erasure", args, env=env)
    run.extra["shop"] = shop
    return run


EVENT_SCENARIOS = ["success", "rerun", "missing", "bad_header", "backfill", "all_tables", "from_env", "slash_namespace", "baseline",
                   "erasure"]


# --- every event is valid ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def validator():
    validator = olvalidate.Validator()
    print(validator.status())
    return validator


def assert_valid(validator, lake: Lake, run: Run) -> None:
    path = lake.work / f"{run.name}.events.jsonl"
    assert path.is_file(), run.describe()
    count, errors, warnings = validator.check_file(path)
    for message in warnings:
        print(f"warning: {message}")
    assert not errors, f"{run.name}: {len(errors)} schema errors:\n" + "\n".join(errors[:20])
    assert count == len(run.lines) > 0
    times = [event_time(e) for e in run.events]
    assert times == sorted(times), f"{run.name}: events not appended in eventTime order"
    assert not any(KEY in line for line in run.lines), f"{run.name}: OPENLINEAGE_API_KEY is in an event"
    for event in run.events:
        for where, _place, key, facet in olvalidate._facets(event):
            want = olvalidate.RECOMMENDED.get(key) or (olvalidate.own_facet_url() if key == olvalidate.OWN_FACET_KEY else None)
            assert want is None or facet["_schemaURL"] == want, f"{run.name} {where}: _schemaURL {facet['_schemaURL']}, expected {want}"


@pytest.mark.parametrize("scenario", EVENT_SCENARIOS)
def test_events_validate(validator, lake, scenario, request):
    assert_valid(validator, lake, request.getfixturevalue(scenario))


def test_abort_events_validate(validator, lake, abort):
    assert_valid(validator, lake, abort)


def test_failing_transport_events_validate(validator, lake, failing_http):
    assert_valid(validator, lake, failing_http)


# --- what the events say -------------------------------------------------------------------------------
def one_run(run: Run, types: list[str]) -> list[dict]:
    assert run.types == types, run.describe()
    assert len(run.runs()) == 1, f"{run.name}: several runIds for one run: {list(run.runs())}"
    return run.events


def check_load_run(events: list[dict], report: dict, namespace: str, rc: int) -> None:
    """A load's events against its run report (stdout) and its exit code."""
    start, end = events[0], events[-1]
    for event in events:
        assert event["job"] == {**event["job"], "namespace": namespace, "name": report["table_name"]}
        (dataset,) = event["inputs"]
        assert (dataset["namespace"], dataset["name"]) == ("file", report["source"])
        (output,) = event["outputs"]
        assert (output["namespace"], output["name"]) == ("file", report["table"])
        assert date_of(event["run"]["facets"]["nominalTime"]["nominalStartTime"]) == report["date"]
    assert event_time(start) <= event_time(end)
    assert "errorMessage" not in start["run"]["facets"]
    facet = dict(end["run"]["facets"][olvalidate.OWN_FACET_KEY])
    assert facet.pop("exit_code") == rc
    shared = {k: v for k, v in report.items() if k in facet and k != "duration_ms"}
    assert {k: facet[k] for k in shared} == shared, "shoplake_runReport differs from the run report on stdout"
    assert {"rows_read", "rows_valid", "table_version", "run_id", "status"} <= set(shared)


def test_success(success):
    assert success.rc == 0, success.describe()
    (report,) = success.reports()
    start, complete = one_run(success, ["START", "COMPLETE"])
    check_load_run([start, complete], report, "shoplake", 0)
    assert report["status"] == "committed"
    (output,) = complete["outputs"]
    assert facets(output)["version"]["datasetVersion"] == str(report["table_version"])
    stats = facets(output, "outputFacets")["outputStatistics"]
    adds, committed = delta_commit(report["table"], report["table_version"])
    assert stats["fileCount"] == report["files_added"] == len(adds)
    assert stats["rowCount"] == report["rows_inserted"] + report["rows_updated"]
    assert stats["size"] == sum(a["size"] for a in adds)
    assert event_time(start) <= committed <= event_time(complete), "START is not before the commit, or COMPLETE not after it"
    header = Path(report["source"]).read_text().split("\n", 1)[0].split(",")
    (dataset,) = complete["inputs"]
    assert [f["name"] for f in facets(dataset)["schema"]["fields"]] == header, "the input schema is not the export's header"
    columns = [c["name"] for c in tomllib.loads((table_defs()[TABLE] / "table.toml").read_text())["columns"]]
    assert set(columns) <= {f["name"] for f in facets(output)["schema"]["fields"]}


def test_http_got_the_file_events(success, from_env):
    for run in (success, from_env):
        assert run.received, f"{run.name}: the receiver got nothing"
        assert [json.loads(r["body"]) for r in run.received] == run.events, f"{run.name}: HTTP and file events differ"
        for request in run.received:
            headers = {k.lower(): v for k, v in request["headers"].items()}
            assert (request["method"], request["path"]) == ("POST", "/api/v1/lineage")
            assert headers.get("authorization") == f"Bearer {KEY}"
            assert headers.get("content-type", "").startswith("application/json")


def test_rerun_completes_without_changes(success, rerun):
    assert rerun.rc == 0, rerun.describe()
    (report,) = rerun.reports()
    assert report["status"] == "unchanged"
    start, complete = one_run(rerun, ["START", "COMPLETE"])
    check_load_run([start, complete], report, "shoplake", 0)
    assert start["run"]["runId"] != success.events[0]["run"]["runId"], "a re-run reuses the first run's runId"
    (output,) = complete["outputs"]
    assert facets(output)["version"]["datasetVersion"] == str(success.reports()[0]["table_version"])
    stats = facets(output, "outputFacets").get("outputStatistics")
    assert stats is None or (stats.get("rowCount", 0), stats.get("fileCount", 0)) == (0, 0)


@pytest.mark.parametrize("scenario,code", [("missing", 3), ("bad_header", 4)])
def test_failure(scenario, code, request):
    run = request.getfixturevalue(scenario)
    assert run.rc == code, run.describe()
    (report,) = run.reports()
    start, fail = one_run(run, ["START", "FAIL"])
    check_load_run([start, fail], report, "shoplake", code)
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"].strip() and error["programmingLanguage"]
    assert fail["run"]["facets"][olvalidate.OWN_FACET_KEY]["status"] == "failed"


def test_abort(abort):
    assert abort.signalled, f"{abort.name}: the load ended before the signal (raise LINEAGE_ABORT_ROWS)"
    assert abort.rc != 0, abort.describe()
    events = one_run(abort, ["START", "ABORT"])
    print(f"{abort.name}: exit {abort.rc} in {abort.seconds:.1f} s; stderr: {abort.err.strip().splitlines()[-1:]}")
    assert events[0]["job"]["name"] == TABLE
    assert events[1]["outputs"][0]["name"] == events[0]["outputs"][0]["name"]


def test_backfill_is_a_parent_run(backfill):
    assert backfill.rc == 0, backfill.describe()
    runs = backfill.runs()
    parents = [r for r, events in runs.items() if events[0]["job"]["name"] == f"{TABLE}.backfill"]
    assert len(parents) == 1, f"no single {TABLE}.backfill run: {[e[0]['job']['name'] for e in runs.values()]}"
    parent_id = parents[0]
    events = backfill.events
    assert (events[0]["run"]["runId"], events[0]["eventType"]) == (parent_id, "START")
    assert (events[-1]["run"]["runId"], events[-1]["eventType"]) == (parent_id, "COMPLETE")
    assert [e["eventType"] for e in runs[parent_id]] == ["START", "COMPLETE"]
    assert date_of(events[0]["run"]["facets"]["nominalTime"]["nominalStartTime"]) == DATES[0]
    children = {r: e for r, e in runs.items() if r != parent_id}
    reports = {r["date"]: r for r in backfill.reports()}
    assert len(children) == len(DATES) == len(reports)
    seen = set()
    for child in children.values():
        assert [e["eventType"] for e in child] == ["START", "COMPLETE"]
        date = date_of(child[0]["run"]["facets"]["nominalTime"]["nominalStartTime"])
        seen.add(date)
        check_load_run(child, reports[date], "shoplake", 0)
        for event in child:
            parent = event["run"]["facets"]["parent"]
            assert parent["run"]["runId"] == parent_id
            assert parent["job"] == {**parent["job"], "namespace": "shoplake", "name": f"{TABLE}.backfill"}
    assert seen == set(DATES)
    summary = dict(runs[parent_id][-1]["run"]["facets"][olvalidate.OWN_FACET_KEY])
    assert summary.pop("exit_code") == 0
    assert summary.get("dates") == len(DATES)
    for key, value in summary.items():
        if key.startswith(("rows_", "files_")):
            assert value == sum(r[key] for r in reports.values()), f"the back-fill's {key} is not the sum of its dates'"


def test_erasure_is_one_run_that_names_the_value_only_by_its_hash(erasure):
    assert erasure.rc == 0, erasure.describe()
    start, end = one_run(erasure, ["START", "COMPLETE"])
    assert start["job"]["name"] == f"{TABLE}.erase"
    (output,) = end["outputs"]
    assert output["name"].endswith(TABLE)
    facet = end["run"]["facets"][olvalidate.OWN_FACET_KEY]
    report = json.loads(erasure.out)
    assert facet["erasure_id"] == report["erasure_id"] and len(facet["value_hash"]) == 64
    assert (facet["rows_erased"], facet["exit_code"]) == (1, 0)
    assert facet["files_purged"] >= 1, facet
    assert output["facets"]["version"]["datasetVersion"] == str(report["table_version"])
    assert not any(erasure.extra["shop"] in line for line in erasure.lines), "the erased value is in an event"


def test_all_tables(all_tables):
    assert all_tables.rc == 0, all_tables.describe()
    runs = all_tables.runs()
    reports = {r["table_name"]: r for r in all_tables.reports()}
    assert set(reports) == set(table_defs()), f"reports for {sorted(reports)}"
    assert sorted(e[0]["job"]["name"] for e in runs.values()) == sorted(table_defs())
    for events in runs.values():
        assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
        check_load_run(events, reports[events[0]["job"]["name"]], "shoplake-flag-test", 0)


def column_lineage(run: Run, table: str) -> tuple[dict, dict]:
    complete = next(e for e in run.events if e["eventType"] == "COMPLETE" and e["job"]["name"] == table)
    return complete, facets(complete["outputs"][0])["columnLineage"]["fields"]


@pytest.mark.parametrize("table,derived,reads", [
    ("shopify_configuration", "has_specific_prefix", {"index_prefix"}),
    ("shopify_usage_daily", "revenue_per_search", {"revenue", "searches"}),
])
def test_column_lineage(all_tables, table, derived, reads):
    complete, fields = column_lineage(all_tables, table)
    (dataset,) = complete["inputs"]
    inputs = fields[derived]["inputFields"]
    assert {(i["namespace"], i["name"]) for i in inputs} == {(dataset["namespace"], dataset["name"])}
    assert reads <= {i["field"] for i in inputs}, f"{derived} reads {reads} (transform.sql), lineage says {inputs}"
    header = set(Path(dataset["name"]).read_text().split("\n", 1)[0].split(","))
    for column, entry in fields.items():
        if column in header:
            assert column in {i["field"] for i in entry["inputFields"]}, f"{column} is not from its export column"
    assert header <= set(fields), f"export columns without lineage: {sorted(header - set(fields))}"


@pytest.mark.parametrize("table", sorted(table_defs()))
def test_data_quality_assertions_are_checks_toml(all_tables, table):
    """The checks of checks.toml, with the run's results, as the spec places them: an InputDatasetFacet
    of the export the checks read."""
    complete, _ = column_lineage(all_tables, table)
    (dataset,) = complete["inputs"]
    assert "dataQualityAssertions" not in facets(complete["outputs"][0]), "dataQualityAssertions among the output's facets"
    assert "dataQualityAssertions" not in facets(dataset), "dataQualityAssertions among the input's facets, not its inputFacets"
    assertions = facets(dataset, "inputFacets")["dataQualityAssertions"]["assertions"]
    checks = checks_of(table)
    assert sorted(a.get("name") for a in assertions) == sorted(c["name"] for c in checks)
    report = next(r for r in all_tables.reports() if r["table_name"] == table)
    passed = {c["name"]: c["passed"] for c in report["checks"]}
    for assertion in assertions:
        check = next(c for c in checks if c["name"] == assertion["name"])
        assert assertion["success"] == passed[assertion["name"]]
        assert assertion.get("column") == check.get("column")


def test_parent_from_the_environment(from_env):
    assert from_env.rc == 0, from_env.describe()
    (report,) = from_env.reports()
    events = one_run(from_env, ["START", "COMPLETE"])
    check_load_run(events, report, "shoplake-env-test", 0)
    for event in events:
        parent = event["run"]["facets"]["parent"]
        assert (parent["job"]["namespace"], parent["job"]["name"], parent["run"]["runId"]) == PARENT
        root = parent.get("root") or {}
        assert (root.get("job", {}).get("namespace"), root.get("job", {}).get("name"), root.get("run", {}).get("runId")) == ROOT


def test_parent_namespace_with_slashes(slash_namespace):
    """namespace/job/runId where the namespace has '/' (airflow://prod/dag.task/<uuid>): split at the
    last two '/'. Without OPENLINEAGE_ROOT_PARENT_ID the parent is also the root."""
    assert slash_namespace.rc == 0, slash_namespace.describe()
    want = slash_namespace.extra["parent"]
    events = one_run(slash_namespace, ["START", "COMPLETE"])
    for event in events:
        parent = event["run"]["facets"].get("parent")
        assert parent is not None, f"OPENLINEAGE_PARENT_ID={'/'.join(want)}: no parent facet; stderr:\n{slash_namespace.err[-1500:]}"
        got = (parent["job"]["namespace"], parent["job"]["name"], parent["run"]["runId"])
        assert got == want, f"OPENLINEAGE_PARENT_ID={'/'.join(want)} read as {got}"
        root = parent.get("root") or {}
        got_root = (root.get("job", {}).get("namespace"), root.get("job", {}).get("name"), root.get("run", {}).get("runId"))
        assert got_root == want, f"no OPENLINEAGE_ROOT_PARENT_ID: the root should be the parent {want}, is {got_root}"


def test_failing_http_transport_only_warns(failing_http, baseline):
    run = failing_http
    assert baseline.rc == 0, baseline.describe()
    assert run.rc == 0, run.describe()
    assert WARNING.search(run.err), f"{run.name}: no lineage warning on stderr:\n{run.err[-1500:]}"
    assert run.seconds <= baseline.seconds + MAX_DELAY, f"{run.name} took {run.seconds:.1f} s, the load alone {baseline.seconds:.1f} s"
    assert run.types == ["START", "COMPLETE"], f"{run.name}: the file transport lost events: {run.types}"
    if run.received is not None:
        assert run.received, f"{run.name}: shoplake never reached the receiver"
    print(f"{run.name}: {run.seconds:.1f} s (the load alone {baseline.seconds:.1f} s); stderr: {WARNING.search(run.err) and run.err.strip().splitlines()[-1]}")


def test_failing_file_transport_only_warns(bad_file, baseline):
    assert bad_file.rc == 0, bad_file.describe()
    assert WARNING.search(bad_file.err), f"no lineage warning on stderr:\n{bad_file.err[-1500:]}"
    assert bad_file.seconds <= baseline.seconds + MAX_DELAY


def test_api_key_is_never_printed(lake, success, from_env, failing_http):
    for run in lake.runs.values():
        assert KEY not in run.out and KEY not in run.err, f"{run.name} printed OPENLINEAGE_API_KEY"
        assert not any(KEY in request["body"] for request in run.received or []), f"{run.name} sent the key in an event"
