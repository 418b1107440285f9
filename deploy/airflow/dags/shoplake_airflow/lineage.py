"""The OpenLineage parent of a shoplake run: which Airflow task run started it (issue #18.5).

shoplake emits OpenLineage events for each load (`--lineage-url`, `--lineage-file`) and reads its
run's `parent` facet from the environment. This module builds that environment from the macros of
apache-airflow-providers-openlineage (airflow/providers/openlineage/plugins/macros.py, 2.20.3):

  lineage_parent_id(ti)       "<namespace>/<dag_id>.<task_id>/<task run UUID>"
  lineage_root_parent_id(ti)  "<namespace>/<dag_id>/<DAG run UUID>"  (or the root named in the
                              DAG run's conf by an upstream OpenLineage parent)

<namespace> is the provider's `[openlineage] namespace` (else env OPENLINEAGE_NAMESPACE, else
"default"); the run UUIDs are the deterministic UUIDv7 the provider's own listener gives the task
run / DAG run, so shoplake's events join Airflow's. Only the job name never holds a "/" (a DAG id
cannot), so split from the right: runId, job name, then the namespace (which may hold "/").

The functions are called in Python, not through Jinja (`{{ macros.OpenLineageProviderPlugin.
lineage_parent_id(ti) }}`): the provider registers the plugin's macros only when OpenLineage is
configured in Airflow, and a template naming a missing macro would fail every load.

The child's environment (both runners):
  OPENLINEAGE_PARENT_ID, OPENLINEAGE_ROOT_PARENT_ID  as above
  OPENLINEAGE_NAMESPACE   shoplake's own job namespace (config `lineage_namespace`, default
                          "shoplake"): set explicitly, because the provider reads the same variable
                          for Airflow's namespace and the worker's value would otherwise leak in
  AIRFLOW_CTX_DAG_ID, AIRFLOW_CTX_TASK_ID, AIRFLOW_CTX_DAG_RUN_ID, AIRFLOW_CTX_TRY_NUMBER,
  AIRFLOW_CTX_LOGICAL_DATE (shoplake's fallback when there is no parent id)
Lineage never fails a load: a macro that raises is logged and its variable left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_LINEAGE_NAMESPACE = "shoplake"
PARENT_ENV = "OPENLINEAGE_PARENT_ID"
ROOT_PARENT_ENV = "OPENLINEAGE_ROOT_PARENT_ID"
NAMESPACE_ENV = "OPENLINEAGE_NAMESPACE"


def split_parent_id(parent_id: str) -> dict[str, str]:
    """ "<namespace>/<job name>/<run id>" -> {"namespace", "name", "run_id"} (split from the right:
    a namespace such as "airflow://host" may hold "/", a job name never does)."""
    namespace, name, run_id = parent_id.rsplit("/", 2)
    if not (namespace and name and run_id):
        raise ValueError(f"not <namespace>/<job>/<run id>: {parent_id!r}")
    return {"namespace": namespace, "name": name, "run_id": run_id}


def airflow_context_env(context: Mapping[str, Any]) -> dict[str, str]:
    """AIRFLOW_CTX_* of the task run (the task runner sets them in the worker's own environment
    too; a pod does not inherit that, so both runners pass them explicitly)."""
    try:
        from airflow.sdk.execution_time.context import context_to_airflow_vars
    except ImportError:  # pragma: no cover - Airflow 3 has it
        return {}
    return context_to_airflow_vars(context, in_env_var_format=True)


def parent_env(context: Mapping[str, Any]) -> dict[str, str]:
    """OPENLINEAGE_PARENT_ID and OPENLINEAGE_ROOT_PARENT_ID from the provider's macros."""
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return {}
    try:
        from airflow.providers.openlineage.plugins.macros import (
            lineage_parent_id,
            lineage_root_parent_id,
        )
    except ImportError as err:
        log.warning(
            "apache-airflow-providers-openlineage not installed: no lineage parent (%s)",
            err,
        )
        return {}
    env = {}
    for name, macro in (
        (PARENT_ENV, lineage_parent_id),
        (ROOT_PARENT_ENV, lineage_root_parent_id),
    ):
        try:
            env[name] = macro(ti)
        except Exception as err:  # noqa: BLE001 (lineage must never fail a load)
            log.warning(
                "OpenLineage macro %s failed, %s not set: %r", macro.__name__, name, err
            )
    return env


def lineage_env(context: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, str]:
    """Everything shoplake needs to name its parent run, for the child's environment."""
    env = airflow_context_env(context)
    env.update(parent_env(context))
    env[NAMESPACE_ENV] = str(cfg.get("lineage_namespace") or DEFAULT_LINEAGE_NAMESPACE)
    return env
