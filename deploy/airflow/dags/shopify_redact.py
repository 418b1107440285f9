"""`shopify_redact`: erase a shop from every shoplake table, purge it, and prove it gone.

Shopify's mandatory `shop/redact` webhook (48 hours after a merchant uninstalls: erase everything
held about the shop, within 30 days; docs/privacy.md). Not scheduled: a webhook handler triggers
it (REST API `POST /api/v2/dags/shopify_redact/dagRuns`, or `airflow dags trigger`) with

    conf {"shop_id": "<the shop's id>",                    required, a non-empty string
          "shop_domain": "<x>.myshopify.com",               optional
          "reason": "<free text>",                          optional, e.g. the webhook's id
          "purge": true}                                    optional, default true

Tasks (shoplake_airflow/redact.py), one after the other:
  erase   `shoplake erase --all-tables --key <shop_id> --purge --reason "shop/redact (dag run
          <run_id>)[: <reason>]" --format json`: every table's rows of the shop (the key column of
          every table is the shop's id) and its rejected lines go in one new version per table;
          with --purge, every file of an older version holding the value is deleted. Without
          `purge` (conf {"purge": false}) older versions keep the value and `verify` fails.
  verify  `shoplake erase --verify --all-tables --key <shop_id> --format json`: reads every
          object of every table and rejects table; exit 0 = the value is nowhere, exit 4 = some
          object still holds it (each logged) -> failed, not retried, alert. Its JSON lines are
          pushed to XCom `evidence` either way: the answer to an auditor.

Neither the shop id nor the domain is written to the lake (the recorded reason names the DAG
run) or to the task logs (masked). The shop id stays in the DAG run's conf in Airflow's metadata
DB: clear old runs (`airflow db clean`) as your retention policy says.

Configuration, as for the ingestion DAGs (ingestion_tables.py): parse time SHOPLAKE_LAKE (--lake),
SHOPLAKE_TABLES (--tables), SHOPLAKE_DAG_RETRIES, SHOPLAKE_DAG_RETRY_DELAY_SECONDS; run time the
Variable `shoplake_ingestion` (binary, aws_region, aws_endpoint_url, tables_dir; its
`table_overrides.shopify_redact` object overrides them for this DAG; runner must be subprocess:
the binary runs on the worker), and the erasure key SHOPLAKE_ERASURE_KEY from the Variable
`shoplake_erasure_secret` (any secrets backend; else the worker's environment). The loads read
the key from the same place: once a table has erasures, every load needs it.

One run at a time (max_active_runs=1): concurrent erasures rewrite the same dates and conflict.
shoplake exit codes -> Airflow: 0 success; 3, 5, 6 retried after retry_delay; 1, 2, 4 and anything
else fail at once and alert (shoplake_airflow/ingest.py).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param
from shoplake_airflow.ingest import LEGACY_TABLE_NAME, alert_on_failure, log_retry
from shoplake_airflow.redact import (
    DAG_ID,
    SHOP_DOMAIN_PATTERN,
    SHOP_ID_PATTERN,
    RedactTarget,
    ShoplakeRedactOperator,
)
from shoplake_airflow.table_definitions import (
    definitions_folder,
    lake_root,
    read_definitions,
    table_location,
)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def default_args() -> dict:
    """The ingestion DAGs' retry settings and callbacks (exit 3/5 retried, alert on failure)."""
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
        "shop_id": Param(
            type="string",
            minLength=1,
            pattern=SHOP_ID_PATTERN,
            description="The shop's id: the value of every table's key column to erase",
        ),
        "shop_domain": Param(
            None,
            type=["null", "string"],
            pattern=SHOP_DOMAIN_PATTERN,
            description="The shop's <x>.myshopify.com (optional; never recorded)",
        ),
        "reason": Param(
            None,
            type=["null", "string"],
            maxLength=500,
            description="Free text added to the recorded reason (e.g. the webhook id)",
        ),
        "purge": Param(
            True,
            type="boolean",
            description="Pass --purge: delete the older versions' files holding the value",
        ),
    }


def build_redact_dag(lake: str, tables_dir: str) -> DAG:
    definitions = read_definitions(Path(tables_dir))
    legacy = [d for d in definitions if d.name == LEGACY_TABLE_NAME]
    target = RedactTarget(
        lake=lake,
        tables_dir=tables_dir,
        table_names=tuple(d.name for d in definitions),
        legacy_location=table_location(lake, legacy[0]) if legacy else None,
    )
    with DAG(
        dag_id=DAG_ID,
        description="shop/redact: erase a shop from every table, purge, verify (shoplake erase)",
        schedule=None,
        start_date=datetime.fromisoformat("2019-04-01T00:00:00+00:00"),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        params=run_params(),
        tags=["shoplake", "delta", "privacy"],
        doc_md=f"Tables: {', '.join(target.table_names)} under `{lake}`.\n\n```\n{__doc__}\n```",
    ) as dag:
        erase = ShoplakeRedactOperator(
            task_id="erase", shoplake_mode="erase", shoplake_target=target
        )
        verify = ShoplakeRedactOperator(
            task_id="verify", shoplake_mode="verify", shoplake_target=target
        )
        erase >> verify
    return dag


shopify_redact = build_redact_dag(lake_root(), str(definitions_folder()))
