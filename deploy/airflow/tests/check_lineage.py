"""Check the OpenLineage events shoplake wrote during an Airflow task run name that run as parent.

    python check_lineage.py SHOPLAKE_EVENTS AIRFLOW_EVENTS DAG_ID TASK_ID AIRFLOW_NAMESPACE [SHOPLAKE_NAMESPACE]

SHOPLAKE_EVENTS: the file shoplake wrote (--lineage-file: one JSON event per line).
AIRFLOW_EVENTS: the events Airflow's OpenLineage provider emitted for the same run (its file
transport), the independent truth: the parent facet must carry the runId Airflow gave the task
run, the root the runId Airflow gave the DAG run (OpenLineage spec 2-0-2, ParentRunFacet 1-2-0:
parent.job {namespace, name}, parent.run {runId}, parent.root {job, run}).

Prints what it checked; exits 1 listing every problem (no event at all is a problem, not a skip).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path


def read_events(path: str) -> list[dict]:
    file = Path(path)
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def single_run_id(events: list[dict], job_name: str, problems: list[str]) -> str | None:
    ids = {
        e["run"]["runId"] for e in events if e.get("job", {}).get("name") == job_name
    }
    if len(ids) != 1:
        problems.append(
            f"Airflow's events give job {job_name!r} {len(ids)} run ids: {sorted(ids)}"
        )
        return None
    return ids.pop()


def check(
    shoplake_events, airflow_events, dag_id, task_id, airflow_ns, shoplake_ns
) -> list[str]:
    problems: list[str] = []
    if not airflow_events:
        problems.append(
            "Airflow's OpenLineage provider wrote no event (its transport is the oracle)"
        )
    task_run = single_run_id(airflow_events, f"{dag_id}.{task_id}", problems)
    dag_run = single_run_id(airflow_events, dag_id, problems)
    if not shoplake_events:
        problems.append(
            "shoplake wrote no OpenLineage event (the DAG passed --lineage-file; "
            "does this binary emit events yet?)"
        )
    expected_parent = {
        "job": {"namespace": airflow_ns, "name": f"{dag_id}.{task_id}"},
        "run": {"runId": task_run},
        "root": {
            "job": {"namespace": airflow_ns, "name": dag_id},
            "run": {"runId": dag_run},
        },
    }
    for i, event in enumerate(shoplake_events):
        where = f"shoplake event {i + 1} ({event.get('eventType')})"
        for key in ("eventTime", "producer", "schemaURL"):
            if not event.get(key):
                problems.append(f"{where}: no {key}")
        run, job = event.get("run") or {}, event.get("job") or {}
        try:
            uuid.UUID(str(run.get("runId")))
        except ValueError:
            problems.append(f"{where}: run.runId {run.get('runId')!r} is not a UUID")
        if job.get("namespace") != shoplake_ns or not job.get("name"):
            problems.append(f"{where}: job {job} is not in namespace {shoplake_ns!r}")
        parent = (run.get("facets") or {}).get("parent")
        if not parent:
            problems.append(f"{where}: no parent run facet")
            continue
        for key in ("_producer", "_schemaURL"):
            if not parent.get(key):
                problems.append(f"{where}: parent facet has no {key}")
        got = {
            "job": {k: (parent.get("job") or {}).get(k) for k in ("namespace", "name")},
            "run": {"runId": (parent.get("run") or {}).get("runId")},
            "root": {
                "job": {
                    k: ((parent.get("root") or {}).get("job") or {}).get(k)
                    for k in ("namespace", "name")
                },
                "run": {
                    "runId": ((parent.get("root") or {}).get("run") or {}).get("runId")
                },
            },
        }
        if got != expected_parent:
            problems.append(
                f"{where}: parent {json.dumps(got)} is not {json.dumps(expected_parent)}"
            )
    if not problems:
        print(
            f"{len(shoplake_events)} shoplake event(s) in namespace {shoplake_ns!r}, each with parent "
            f"{airflow_ns}/{dag_id}.{task_id}/{task_run} and root {airflow_ns}/{dag_id}/{dag_run} "
            "(the run ids Airflow's own OpenLineage events carry)"
        )
    return problems


def main(argv: list[str]) -> int:
    shoplake_file, airflow_file, dag_id, task_id, airflow_ns = argv[:5]
    shoplake_ns = argv[5] if len(argv) > 5 else "shoplake"
    problems = check(
        read_events(shoplake_file),
        read_events(airflow_file),
        dag_id,
        task_id,
        airflow_ns,
        shoplake_ns,
    )
    for problem in problems:
        print(f"lineage problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
