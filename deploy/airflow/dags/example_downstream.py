"""Example consumer of the shoplake tables' Airflow Assets: one DAG `example_downstream_<name>` per
table definition, scheduled on the table's Asset (declared by `ingestion_<name>`, ingestion_tables.py).

When a load succeeds, Airflow records an asset event whose extra carries the loaded `date` and the
Delta version it produced (`table_version`), and queues this DAG; the scheduler then starts a run
that consumes the events since the previous run. The task reads exactly that version, whatever
loads happened since, with time travel:

    shoplake query --table-name <name> --table <location> --as-of <table_version> \
        --sql "SELECT count(*) AS n_rows FROM <name> WHERE <partition_by> = '<date>'"

and checks the count against the load's `rows_valid` (after a load, the date's rows are exactly
the export's valid rows). A real consumer would build its mart from the same query. Events of dry
runs (nothing written) are ignored; an event without a version (a pod run: the report stays in the
pod's log) reads the latest version. Run by hand (no triggering event), it reads the latest event
of the asset (the task declares the asset as an inlet).

The binary and the AWS settings come from the same Variable `shoplake_ingestion` as the loads
(subprocess on the worker; this example has no Kubernetes variant). The DAGs are paused at
creation like any other (`dags_are_paused_at_creation`): unpause the ones you want.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from shoplake_airflow.ingest import PER_TABLE_ENV, aws_env, load_config, parse_report
from shoplake_airflow.table_definitions import (
    TableDefinition,
    definitions_folder,
    lake_root,
    read_definitions,
    table_asset,
    table_location,
)

DAG_ID_PREFIX = "example_downstream_"
QUERY_TIMEOUT_SECONDS = 600


def latest_load_event(events: list[Any]) -> dict[str, Any] | None:
    """The extra of the newest event that wrote or confirmed the table (not a dry run)."""
    extras = [dict(e.extra or {}) for e in sorted(events, key=lambda e: e.timestamp)]
    loads = [x for x in extras if x.get("status") != "dry_run"]
    return loads[-1] if loads else None


def query_sql(definition: TableDefinition, export_date: str) -> str:
    return (
        f"SELECT count(*) AS n_rows FROM {definition.name} "
        f"WHERE {definition.partition_by} = '{export_date}'"
    )


def build_downstream_dag(
    definition: TableDefinition, lake: str, tables_dir: str
) -> DAG:
    asset: Asset = table_asset(definition, lake)
    location = table_location(lake, definition)
    with DAG(
        dag_id=DAG_ID_PREFIX + definition.name,
        description=f"Example: read each new version of {definition.name} (scheduled on its asset)",
        schedule=[asset],
        start_date=datetime(2019, 4, 1),
        catchup=False,
        max_active_runs=1,
        tags=["shoplake", "example", definition.name],
        doc_md=__doc__,
    ) as dag:

        @task(task_id="read_loaded_version", inlets=[asset])
        def read_loaded_version(**context: Any) -> dict[str, Any]:
            events = list(context["triggering_asset_events"].get(asset, []))
            source = "triggering"
            if not events:  # a manual run: the newest event of the asset
                source = "latest"
                try:
                    events = [context["inlet_events"][asset][-1]]
                except IndexError:
                    events = []
            load = latest_load_event(events)
            if load is None:
                raise AirflowSkipException(f"no load event of {asset.uri} to read")
            if not definition.partition_by:
                raise AirflowFailException(
                    f"table {definition.name}: no partition_by in its definition"
                )
            cfg = load_config(definition.name)
            export_date, version = load["date"], load.get("table_version")
            argv = [
                str(cfg["binary"]),
                "query",
                "--tables", str(cfg.get("tables_dir") or tables_dir),
                "--table-name", definition.name,
                "--table", str(load.get("table") or location),
                "--sql", query_sql(definition, export_date),
                "--format", "json",
            ]  # fmt: skip
            if version is not None:
                argv += ["--as-of", str(version)]
            print(f"{source} event {json.dumps(load, sort_keys=True)}: running {argv}")
            env = {k: v for k, v in os.environ.items() if k not in PER_TABLE_ENV}
            proc = subprocess.run(
                argv, capture_output=True, text=True, env={**env, **aws_env(cfg)},
                timeout=QUERY_TIMEOUT_SECONDS, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise AirflowFailException(
                    f"shoplake query exited {proc.returncode}: {proc.stderr.strip()}"
                )
            result = parse_report(proc.stdout)
            if result is None:
                raise AirflowFailException(
                    f"shoplake query printed no JSON object: {proc.stdout!r}"
                )
            rows = int(result["n_rows"])
            summary = {
                "table_name": definition.name, "date": export_date,
                "table_version": version, "rows": rows, "rows_valid": load.get("rows_valid"),
            }  # fmt: skip
            print(f"SHOPLAKE DOWNSTREAM {json.dumps(summary, sort_keys=True)}")
            if load.get("rows_valid") is not None and rows != int(load["rows_valid"]):
                raise AirflowFailException(
                    f"{definition.name} version {version} has {rows} rows for {export_date}, "
                    f"the load reported {load['rows_valid']} valid rows"
                )
            return summary

        read_loaded_version()
    return dag


_FOLDER = definitions_folder()
_LAKE = lake_root()
for _definition in read_definitions(_FOLDER):
    globals()[DAG_ID_PREFIX + _definition.name] = build_downstream_dag(
        _definition, _LAKE, str(_FOLDER)
    )
