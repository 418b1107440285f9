"""Daily loads of every shoplake table: one DAG `ingestion_<name>` per table definition.

Airflow 3 (`airflow.sdk`). The tables are the definitions `<SHOPLAKE_TABLES>/<name>/table.toml`,
read when this file is parsed (shoplake_airflow/table_definitions.py: tomllib, no process, no
database; why there). With the repository's tables/ that is `ingestion_shopify_configuration`
(exports `<source>/{date}.csv`) and `ingestion_shopify_usage_daily` (exports
`<source>/usage/shop_usage_{date}.csv`); adding a folder adds a DAG, no code change. Every DAG
has the same schedule, params and behaviour (those of the original
`ingestion_shopify_configuration`, unchanged):

One run loads one export date with `shoplake ingest --table-name <name> --table <location>
--format json`; the load is an idempotent MERGE, so re-runs, clears and back-fills are safe.

Which date a run loads (see `resolve_export_date`):
  * a manual trigger with the `date` param (YYYY-MM-DD) loads that date;
  * otherwise: the run's logical date (UTC) minus `date_offset_days` (default 1). The schedule is
    a `CronTriggerTimetable` at 03:00 UTC, whose logical date is the run time itself, so the run
    at 2019-04-02T03:00Z loads the export of 2019-04-01 (yesterday's export is complete after
    midnight). A manual run without `date` loads the day before its trigger time.

The table as an Airflow Asset (issue #18.4): the load tasks' outlet is
`Asset(name=<name>, uri=<its location>)` (file:///... or s3://...). A successful load records an
asset event whose extra holds the loaded date, the Delta version (`table_version`), the status and
the row counts of the run report; a failed load records none. example_downstream.py shows a DAG
scheduled on it.

Lineage (issue #18.5): shoplake gets the OpenLineage parent (this task run) and root (this DAG run)
from apache-airflow-providers-openlineage's macros (shoplake_airflow/lineage.py).

Parse-time settings (environment of the DAG processor and the workers; cheap, no database):
  SHOPLAKE_LAKE (required) and SHOPLAKE_TABLES: where the tables live, where their definitions are
  SHOPLAKE_DAG_RETRIES, SHOPLAKE_DAG_RETRY_DELAY_SECONDS, SHOPLAKE_DAG_MAX_ACTIVE_RUNS,
  SHOPLAKE_DAG_CATCHUP, SHOPLAKE_DAG_START_DATE

Run-time configuration, read when a task runs (never when the file is parsed), from the JSON
Variable `shoplake_ingestion` (example: deploy/airflow/variables.json), each key falling back to the
worker's environment: runner (subprocess|kubernetes), binary (SHOPLAKE_BIN), source
(SHOPLAKE_SOURCE), table (SHOPLAKE_TABLE: shopify_configuration's location; when given it must be
<SHOPLAKE_LAKE>/shopify_configuration, the asset's), aws_region (AWS_REGION), aws_endpoint_url
(AWS_ENDPOINT_URL), image, namespace, service_account, date_offset_days, tables_dir (--tables;
default: the parsed folder for the subprocess runner, the image's definitions for pods), optional
ingest flags (max_delete_ratio, max_reject_ratio, metrics_file, pushgateway_url, extra_args),
lineage_url, lineage_file, lineage_namespace (default "shoplake"), lineage_api_key_secret (pods:
{"name", "key"} of the Secret holding OPENLINEAGE_API_KEY); and `table_overrides`: {<table name>:
{any key above}} for one table. No secret lives here: AWS credentials come from the worker's
environment / instance profile / IRSA, or the pod's service account; the erasure key
(SHOPLAKE_ERASURE_KEY, which loads need once a table has erasures: shopify_redact.py) from the
Variable `shoplake_erasure_secret` or the worker's environment (subprocess), or the Kubernetes
Secret named by `erasure_key_secret` ({"name", "key"}, pods).

shoplake exit codes -> Airflow: 0 success; 3, 5, 6 retried after retry_delay; 1, 2, 4 and anything
else fail at once and alert (shoplake_airflow/ingest.py).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, CronTriggerTimetable, Param, task
from airflow.sdk.exceptions import AirflowFailException
from shoplake_airflow.ingest import (
    DATE_PATTERN,
    IngestTarget,
    ShoplakeIngestOperator,
    ShoplakePodOperator,
    alert_on_failure,
    load_config,
    log_retry,
    resolve_export_date,
)
from shoplake_airflow.table_definitions import (
    TableDefinition,
    definitions_folder,
    lake_root,
    read_definitions,
    table_asset,
    table_location,
)

SCHEDULE_CRON = "0 3 * * *"
DAG_ID_PREFIX = "ingestion_"

__all__ = ["SCHEDULE_CRON", "dag_id_for", "resolve_export_date"]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def dag_id_for(table_name: str) -> str:
    return DAG_ID_PREFIX + table_name


def default_args() -> dict:
    return {
        "owner": "data-engineering",
        "retries": _env_int("SHOPLAKE_DAG_RETRIES", 6),
        "retry_delay": timedelta(
            seconds=_env_int("SHOPLAKE_DAG_RETRY_DELAY_SECONDS", 1800)
        ),
        "execution_timeout": timedelta(hours=3),
        "on_failure_callback": alert_on_failure,
        "on_retry_callback": log_retry,
    }


def run_params() -> dict:
    return {
        "date": Param(
            None,
            type=["null", "string"],
            pattern=DATE_PATTERN,
            format="date",
            description="Export date YYYY-MM-DD to load; empty = the run's logical date minus the offset",
        ),
        "max_delete_ratio": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            description="Override --max-delete-ratio for this run (e.g. 1 for a corrected re-export)",
        ),
        "allow_empty": Param(
            False,
            type="boolean",
            description="Pass --allow-empty: an export without valid rows may empty the date",
        ),
        "dry_run": Param(
            False, type="boolean", description="Pass --dry-run (report only, no commit)"
        ),
    }


def build_ingestion_dag(definition: TableDefinition, lake: str, tables_dir: str) -> DAG:
    """`ingestion_<name>`: choose the runner, then load the day's export of the table."""
    target = IngestTarget(
        name=definition.name,
        location=table_location(lake, definition),
        tables_dir=tables_dir,
    )
    asset = table_asset(definition, lake)
    description = definition.description or f"the table {definition.name}"
    if definition.problem:
        description = f"DEFINITION UNREADABLE, runs will fail: {definition.problem}"
    with DAG(
        dag_id=dag_id_for(definition.name),
        description=f"Load the daily export into Delta (shoplake ingest): {description}",
        schedule=CronTriggerTimetable(SCHEDULE_CRON, timezone="UTC"),
        start_date=datetime.fromisoformat(
            os.environ.get("SHOPLAKE_DAG_START_DATE") or "2019-04-02T00:00:00+00:00"
        ),
        catchup=os.environ.get("SHOPLAKE_DAG_CATCHUP", "false").strip().lower()
        in ("1", "true", "yes"),
        max_active_runs=_env_int("SHOPLAKE_DAG_MAX_ACTIVE_RUNS", 2),
        default_args=default_args(),
        params=run_params(),
        tags=["shoplake", "delta", definition.name],
        doc_md=f"**{definition.name}**: {description}\n\n"
        f"Table `{target.location}`, exports `<source>/{definition.source_pattern}`, "
        f"definition `{definition.folder}`.\n\n```\n{__doc__}\n```",
    ) as dag:

        @task.branch(task_id="choose_runner")
        def choose_runner() -> str:
            runner = load_config(definition.name)["runner"]
            if runner not in ("subprocess", "kubernetes"):
                raise AirflowFailException(
                    f"runner must be subprocess or kubernetes, not {runner!r}"
                )
            return f"ingest_{runner}"

        choose_runner() >> [
            ShoplakeIngestOperator(
                task_id="ingest_subprocess",
                shoplake_target=target,
                shoplake_asset=asset,
            ),
            ShoplakePodOperator(
                task_id="ingest_kubernetes",
                shoplake_target=target,
                shoplake_asset=asset,
            ),
        ]
    return dag


_FOLDER = definitions_folder()
_LAKE = lake_root()
for _definition in read_definitions(_FOLDER):
    globals()[dag_id_for(_definition.name)] = build_ingestion_dag(
        _definition, _LAKE, str(_FOLDER)
    )
