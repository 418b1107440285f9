"""Run time of the ingestion DAGs: configuration, `shoplake ingest` arguments, exit codes, runners.

Nothing here runs when a DAG file is parsed: the Variable is read, the date resolved and shoplake
started only when a task runs (see ingestion_tables.py for the DAGs and their configuration).

shoplake exit codes -> Airflow:
  0 success (also "nothing to change")   -> success, report returned as XCom, asset event emitted
  3 export not there yet, 5 storage/conflicts, 6 catalog not updated -> AirflowException: retried after retry_delay
  1 internal, 2 configuration, 4 data refused, anything else -> AirflowFailException: failed at
    once, no retry, on_failure_callback alerts
A failed task emits no asset event (Airflow records outlet events only for a successful task).

The erasure key (SHOPLAKE_ERASURE_KEY, needed by every load of a table with erasures, see
shopify_redact.py): from the Variable `shoplake_erasure_secret` (subprocess; else the worker's
own environment) or the Kubernetes Secret named by `erasure_key_secret` (pods).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Asset, BaseOperator, Variable
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
)
from airflow.sdk.log import mask_secret
from kubernetes.client import models as k8s

from shoplake_airflow.lineage import DEFAULT_LINEAGE_NAMESPACE, lineage_env
from shoplake_airflow.table_definitions import normalize_location

log = logging.getLogger(__name__)

CONFIG_VARIABLE = "shoplake_ingestion"
# The secret erasures are hashed with (docs/privacy.md): a Variable of its own, whose name Airflow
# masks ("secret"), and the environment variable shoplake reads it from.
ERASURE_KEY_VARIABLE = "shoplake_erasure_secret"
ERASURE_KEY_ENV = "SHOPLAKE_ERASURE_KEY"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# The table whose location the Variable's top-level `table` key (and SHOPLAKE_TABLE) may name:
# the only table there was before table definitions.
LEGACY_TABLE_NAME = "shopify_configuration"

# shoplake's exit codes (docs/guarantees.md, "Exit codes").
EXIT_OK = 0
RETRYABLE_EXIT_CODES = {
    3: "export for the date not there yet",
    5: "storage unavailable or commit conflicts",
    6: "data committed, catalog (Glue, Unity Catalog) not updated",
}
FATAL_EXIT_CODES = {
    1: "internal error",
    2: "bad command line or configuration",
    4: "data refused",
}

# Environment fallbacks for the keys of the `shoplake_ingestion` Variable.
ENV_FALLBACKS = {
    "binary": "SHOPLAKE_BIN",
    "source": "SHOPLAKE_SOURCE",
    "table": "SHOPLAKE_TABLE",
    "aws_region": "AWS_REGION",
    "aws_endpoint_url": "AWS_ENDPOINT_URL",
}
DEFAULTS: dict[str, Any] = {
    "runner": "subprocess",
    "binary": "shoplake",
    "image": None,
    "command": None,  # pod: None keeps the image's ENTRYPOINT (/usr/local/bin/shoplake)
    "namespace": "default",
    "service_account": None,
    "date_offset_days": 1,
    "lineage_namespace": DEFAULT_LINEAGE_NAMESPACE,
}
# Variables of the worker's environment that would point every table's run at one table: the
# DAG names its table explicitly (--table-name, --table), the rejects table follows the table.
PER_TABLE_ENV = ("SHOPLAKE_TABLE", "SHOPLAKE_TABLE_NAME", "SHOPLAKE_REJECTS_TABLE")
# The run report's fields copied into the asset event's extra.
REPORT_EXTRA_FIELDS = (
    "table_name", "date", "status", "table_version", "table", "run_id",
    "rows_read", "rows_filtered", "rows_rejected", "rows_duplicate", "rows_suppressed", "rows_other_type", "rows_valid",
    "rows_inserted", "rows_updated", "rows_deleted", "rows_unchanged",
)  # fmt: skip


@dataclass(frozen=True)
class IngestTarget:
    """What one DAG loads, fixed when the DAG file is parsed."""

    name: str  # --table-name
    location: str  # --table: <lake>/<table_path>, the Asset's location
    # --tables for the subprocess runner: the definitions folder the DAG file was built from
    tables_dir: str | None = None


# --------------------------------------------------------------------------- pure helpers


def resolve_export_date(
    logical_date: datetime | None,
    param_date: str | None = None,
    offset_days: int = 1,
    run_after: datetime | None = None,
) -> str:
    """The export date (YYYY-MM-DD) a run loads.

    A `date` param (manual trigger) wins. Otherwise the run's logical date (or, for a manual run
    without a logical date, its run_after), taken in UTC, minus `offset_days`.
    """
    if param_date:
        if not re.fullmatch(DATE_PATTERN, param_date):
            raise ValueError(f"date param {param_date!r} is not YYYY-MM-DD")
        return date.fromisoformat(param_date).isoformat()  # rejects 2019-02-30
    anchor = logical_date or run_after
    if anchor is None:
        raise ValueError(
            "run has neither a logical date nor run_after, and no date param"
        )
    if anchor.tzinfo is None:
        raise ValueError(f"naive datetime {anchor!r}: Airflow dates are timezone-aware")
    if offset_days < 0:
        raise ValueError(f"date_offset_days must be >= 0, got {offset_days}")
    utc = timezone.utc  # noqa: UP017 (datetime.UTC needs Python 3.11; Airflow 3 supports 3.10)
    return (anchor.astimezone(utc).date() - timedelta(days=offset_days)).isoformat()


def check_table_location(target: IngestTarget, cfg: dict[str, Any]) -> None:
    """A `table` in the configuration must be the DAG's table location: the Asset (declared when
    the file was parsed, from SHOPLAKE_LAKE) must never name another table than the one loaded."""
    configured = cfg.get("table")
    if configured and normalize_location(str(configured)) != target.location:
        raise AirflowFailException(
            f"table {configured!r} (Variable {CONFIG_VARIABLE} or SHOPLAKE_TABLE) is not "
            f"{target.location!r}, where the DAG's asset {target.name} says the table is "
            "(<SHOPLAKE_LAKE>/<table_path>): fix one of them"
        )


def build_ingest_args(
    export_date: str,
    target: IngestTarget,
    cfg: dict[str, Any],
    params: dict[str, Any] | None = None,
    tables_dir: str | None = None,
) -> list[str]:
    """The `shoplake ingest` arguments (without the program) for both runners."""
    params = params or {}
    if not cfg.get("source"):
        raise AirflowFailException(
            f"shoplake source not configured: set 'source' in Variable {CONFIG_VARIABLE} "
            f"or {ENV_FALLBACKS['source']} in the worker's environment"
        )
    check_table_location(target, cfg)
    args = ["ingest", "--date", export_date, "--table-name", target.name]
    if tables_dir:
        args += ["--tables", str(tables_dir)]
    args += ["--source", str(cfg["source"]), "--table", target.location]
    max_delete_ratio = params.get("max_delete_ratio")
    if max_delete_ratio is None:
        max_delete_ratio = cfg.get("max_delete_ratio")
    if max_delete_ratio is not None:
        args += ["--max-delete-ratio", str(max_delete_ratio)]
    if cfg.get("max_reject_ratio") is not None:
        args += ["--max-reject-ratio", str(cfg["max_reject_ratio"])]
    if params.get("dry_run"):
        args.append("--dry-run")
    if params.get("allow_empty"):
        args.append("--allow-empty")
    if cfg.get("metrics_file"):
        args += ["--metrics-file", str(cfg["metrics_file"])]
    if cfg.get("pushgateway_url"):
        args += ["--pushgateway", str(cfg["pushgateway_url"])]
    if cfg.get("lineage_url"):
        args += ["--lineage-url", str(cfg["lineage_url"])]
    if cfg.get("lineage_file"):
        args += ["--lineage-file", str(cfg["lineage_file"])]
    args += [str(a) for a in cfg.get("extra_args") or []]
    args += ["--format", "json"]
    return args


def aws_env(cfg: dict[str, Any]) -> dict[str, str]:
    """Non-secret AWS settings passed to shoplake (credentials come from the environment / IRSA)."""
    env = {}
    if cfg.get("aws_region"):
        env["AWS_REGION"] = str(cfg["aws_region"])
    if cfg.get("aws_endpoint_url"):
        env["AWS_ENDPOINT_URL"] = str(cfg["aws_endpoint_url"])
    return env


def erasure_key_env() -> dict[str, str]:
    """SHOPLAKE_ERASURE_KEY from the Airflow Variable `shoplake_erasure_secret` (any secrets
    backend: metadata DB, AIRFLOW_VAR_SHOPLAKE_ERASURE_SECRET, Vault, AWS Secrets Manager...),
    masked in every log; {} when it is not set (the worker's own SHOPLAKE_ERASURE_KEY, if any, is
    inherited). A load of a table with erasures needs the key (docs/privacy.md): the loads and the
    shopify_redact DAG read it from the same place. Never in the `shoplake_ingestion` Variable."""
    value = Variable.get(ERASURE_KEY_VARIABLE, default=None)
    if value is None or not str(value):
        return {}
    mask_secret(str(value))
    return {ERASURE_KEY_ENV: str(value)}


def asset_event_extra(
    report: dict[str, Any] | None, export_date: str, target: IngestTarget
) -> dict[str, Any]:
    """The asset event's extra: the loaded date, the Delta version, the row counts (from the run
    report; a pod run has no report here, so only the date and the table)."""
    extra: dict[str, Any] = {
        "table_name": target.name,
        "date": export_date,
        "table": target.location,
    }
    for key in REPORT_EXTRA_FIELDS:
        if report and report.get(key) is not None:
            extra[key] = report[key]
    return extra


class ShoplakeRunError(AirflowException):
    """shoplake failed with a code worth retrying (3, 5, 6): Airflow retries after retry_delay."""

    def __init__(self, message: str, exit_code: int | None, export_date: str | None):
        super().__init__(message)
        self.exit_code = exit_code
        self.export_date = export_date


class ShoplakeFatalError(AirflowFailException):
    """shoplake failed with a code not worth retrying (1, 2, 4, other): fail now and alert."""

    def __init__(self, message: str, exit_code: int | None, export_date: str | None):
        super().__init__(message)
        self.exit_code = exit_code
        self.export_date = export_date


def check_exit_code(
    exit_code: int | None,
    export_date: str | None,
    detail: str = "",
    command: str | None = None,
) -> None:
    """Return on success; raise the exception that gives Airflow the right retry behaviour.
    `command` names the run in the message (default "ingest <export date>")."""
    if exit_code == EXIT_OK:
        return
    suffix = f": {detail}" if detail else ""
    command = command or f"ingest {export_date}"
    if exit_code in RETRYABLE_EXIT_CODES:
        raise ShoplakeRunError(
            f"shoplake {command} exited {exit_code} ({RETRYABLE_EXIT_CODES[exit_code]}), "
            f"will retry{suffix}",
            exit_code,
            export_date,
        )
    meaning = (
        FATAL_EXIT_CODES.get(exit_code, "unexpected exit")
        if exit_code is not None
        else "no exit code"
    )
    raise ShoplakeFatalError(
        f"shoplake {command} exited {exit_code} ({meaning}), not retried{suffix}",
        exit_code,
        export_date,
    )


def parse_report(stdout: str) -> dict[str, Any] | None:
    """The JSON report: the last stdout line that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def pod_exit_code(remote_pod: Any, container_name: str = "base") -> int | None:
    """Exit code of the terminated container `container_name` of a pod, or None."""
    statuses = (
        remote_pod.status.container_statuses
        if remote_pod and remote_pod.status
        else None
    ) or []
    for status in statuses:
        if status.name == container_name and status.state and status.state.terminated:
            return status.state.terminated.exit_code
    return None


# --------------------------------------------------------------------------- runtime helpers


def load_config(table_name: str = LEGACY_TABLE_NAME) -> dict[str, Any]:
    """DEFAULTS < worker environment < Variable `shoplake_ingestion` < its
    `table_overrides.<table_name>` object (read at run time, never at parse time). The top-level
    `table` (and SHOPLAKE_TABLE) concern shopify_configuration only."""
    cfg = dict(DEFAULTS)
    for key, env_name in ENV_FALLBACKS.items():
        if os.environ.get(env_name):
            cfg[key] = os.environ[env_name]
    variable = Variable.get(CONFIG_VARIABLE, default=None, deserialize_json=True) or {}
    if not isinstance(variable, dict):
        raise AirflowFailException(f"Variable {CONFIG_VARIABLE} must be a JSON object")
    overrides = variable.pop("table_overrides", None) or {}
    if not isinstance(overrides, dict) or not isinstance(
        overrides.get(table_name, {}), dict
    ):
        raise AirflowFailException(
            f"table_overrides in Variable {CONFIG_VARIABLE}: objects by table name"
        )
    cfg.update({k: v for k, v in variable.items() if v is not None and v != ""})
    if table_name != LEGACY_TABLE_NAME:
        cfg.pop("table", None)
    cfg.update(
        {
            k: v
            for k, v in overrides.get(table_name, {}).items()
            if v is not None and v != ""
        }
    )
    return cfg


def plan_run(
    context: Any, cfg: dict[str, Any], target: IngestTarget, tables_dir: str | None
) -> tuple[str, list[str]]:
    """(export date, ingest arguments) for this task instance."""
    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    try:
        export_date = resolve_export_date(
            context.get("logical_date"),
            params.get("date"),
            int(cfg.get("date_offset_days", 1)),
            getattr(dag_run, "run_after", None),
        )
    except ValueError as err:
        raise AirflowFailException(str(err)) from err
    return export_date, build_ingest_args(export_date, target, cfg, params, tables_dir)


def _attempt_fields(context: Any) -> tuple[tuple[Any, ...], Any]:
    """What the callbacks log of a task attempt: (dag, task, run, export date,
    exit code, try), and the exception that ended it."""
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    fields = (
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "run_id", "?"),
        getattr(exc, "export_date", None),
        getattr(exc, "exit_code", None),
        getattr(ti, "try_number", "?"),
    )
    return fields, exc


def alert_on_failure(context: Any) -> None:
    """on_failure_callback: the place where alerting plugs in."""
    fields, exc = _attempt_fields(context)
    log.error(
        "SHOPLAKE ALERT dag=%s task=%s run_id=%s export_date=%s exit_code=%s try=%s error=%s",
        *fields,
        exc,
    )
    # Page / notify here, e.g. SlackNotifier or a PagerDuty Events API call from
    # apache-airflow-providers-slack / -pagerduty, with the connection holding the token
    # (never a token in this file).


def log_retry(context: Any) -> None:
    """on_retry_callback: exit 3 / 5, the task will be retried after retry_delay."""
    fields, _ = _attempt_fields(context)
    log.warning(
        "SHOPLAKE RETRY dag=%s task=%s run_id=%s export_date=%s exit_code=%s try=%s",
        *fields,
    )


def emit_asset_event(context: Any, asset: Asset, extra: dict[str, Any]) -> None:
    """Attach `extra` to the event Airflow records for the table's Asset when the task succeeds."""
    context["outlet_events"][asset].extra = extra


def run_shoplake(
    operator: Any, argv: list[str], env: dict[str, str], export_date: str | None = None
) -> tuple[int, str, str]:
    """Run shoplake, its stderr (logs) streamed into the task log as `[shoplake] ...` lines:
    (exit code, stdout, last stderr line: the error message on failure). `operator._proc` is the
    running process, for its on_kill. A binary that cannot start is configuration: no retry."""
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
    except OSError as err:  # binary missing or not executable: configuration
        raise ShoplakeFatalError(
            f"cannot run {argv[0]}: {err}", None, export_date
        ) from err
    stdout_chunks: list[str] = []
    last_stderr = ""
    reader = threading.Thread(target=lambda: stdout_chunks.append(proc.stdout.read()))
    reader.start()
    operator._proc = proc
    try:
        for line in proc.stderr:
            if line.strip():
                last_stderr = line.strip()
                operator.log.info("[shoplake] %s", last_stderr)
        exit_code = proc.wait()
    except BaseException:
        # execution_timeout, SIGTERM: do not leave shoplake running
        operator.on_kill()
        raise
    finally:
        reader.join(timeout=10)
        operator._proc = None
    return exit_code, "".join(stdout_chunks), last_stderr


# --------------------------------------------------------------------------- operators


class ShoplakeIngestOperator(BaseOperator):
    """Runs the shoplake binary on the worker (runner "subprocess")."""

    ui_color = "#d6eaf8"

    def __init__(
        self, *, shoplake_target: IngestTarget, shoplake_asset: Asset, **kwargs: Any
    ) -> None:
        kwargs.setdefault("outlets", [shoplake_asset])
        super().__init__(**kwargs)
        self.shoplake_target = shoplake_target
        self.shoplake_asset = shoplake_asset
        self._proc: subprocess.Popen[str] | None = None

    def execute(self, context: Any) -> dict[str, Any] | None:
        target = self.shoplake_target
        cfg = load_config(target.name)
        export_date, args = plan_run(
            context, cfg, target, cfg.get("tables_dir") or target.tables_dir
        )
        argv = [str(cfg["binary"]), *args]
        env = {k: v for k, v in os.environ.items() if k not in PER_TABLE_ENV}
        env.update(aws_env(cfg))
        env.update(erasure_key_env())
        env.update(lineage_env(context, cfg))
        self.log.info("export date %s: running %s", export_date, shlex.join(argv))
        exit_code, stdout, last_stderr = run_shoplake(self, argv, env, export_date)
        report = parse_report(stdout)
        if report is not None:
            self.log.info("shoplake report: %s", json.dumps(report, sort_keys=True))
        elif stdout.strip():
            self.log.warning("shoplake stdout (no JSON report): %s", stdout.strip())
        self.log.info("shoplake exit code %s", exit_code)
        check_exit_code(exit_code, export_date, last_stderr)
        extra = asset_event_extra(report, export_date, target)
        emit_asset_event(context, self.shoplake_asset, extra)
        self.log.info(
            "asset %s event extra: %s",
            self.shoplake_asset.uri,
            json.dumps(extra, sort_keys=True),
        )
        return report

    def on_kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            self.log.info("terminating shoplake (pid %s)", self._proc.pid)
            self._proc.terminate()


class ShoplakePodOperator(KubernetesPodOperator):
    """Runs the shoplake container image (runner "kubernetes"), same arguments as the subprocess.

    Image, namespace, service account (IRSA for S3) and arguments are resolved when the task
    runs. The image's own table definitions are used unless `tables_dir` is configured (a folder
    mounted in the pod). A failed pod is mapped like the subprocess: container exit code 3/5 ->
    retry, 1/2/4 -> AirflowFailException; a pod that failed without an exit code (eviction, image
    pull) keeps KubernetesPodOperator's plain AirflowException and is retried. The report stays in
    the pod's log, so the asset event's extra has the date and table but no version or counts.
    """

    def __init__(
        self, *, shoplake_target: IngestTarget, shoplake_asset: Asset, **kwargs: Any
    ) -> None:
        kwargs.setdefault("name", "shoplake-" + shoplake_target.name.replace("_", "-"))
        kwargs.setdefault("get_logs", True)
        kwargs.setdefault("on_finish_action", "delete_pod")
        # IRSA credentials are projected by EKS; the pod needs no Kubernetes API token.
        kwargs.setdefault("automount_service_account_token", False)
        # Exit codes are mapped in cleanup(), which the synchronous mode runs.
        kwargs.setdefault("deferrable", False)
        kwargs.setdefault("outlets", [shoplake_asset])
        super().__init__(**kwargs)
        self.shoplake_target = shoplake_target
        self.shoplake_asset = shoplake_asset
        self.shoplake_export_date: str | None = None

    def prepare(self, context: Any, cfg: dict[str, Any]) -> None:
        if not cfg.get("image"):
            raise AirflowFailException(
                f"runner kubernetes needs 'image' in Variable {CONFIG_VARIABLE}"
            )
        self.shoplake_export_date, self.arguments = plan_run(
            context, cfg, self.shoplake_target, cfg.get("tables_dir")
        )
        self.image = str(cfg["image"])
        self.cmds = [str(c) for c in cfg.get("command") or []]  # [] = ENTRYPOINT
        self.namespace = str(cfg["namespace"])
        if cfg.get("service_account"):
            self.service_account_name = str(cfg["service_account"])
        env = {**aws_env(cfg), **lineage_env(context, cfg)}
        self.env_vars = [k8s.V1EnvVar(name=k, value=v) for k, v in env.items()]
        # {"name": ..., "key": ...}: Kubernetes Secrets, never a value in the Variable
        for env_name, cfg_key in (
            ("OPENLINEAGE_API_KEY", "lineage_api_key_secret"),
            (ERASURE_KEY_ENV, "erasure_key_secret"),
        ):
            secret = cfg.get(cfg_key)
            if secret:
                self.env_vars.append(
                    k8s.V1EnvVar(
                        name=env_name,
                        value_from=k8s.V1EnvVarSource(
                            secret_key_ref=k8s.V1SecretKeySelector(
                                name=secret["name"], key=secret["key"]
                            )
                        ),
                    )
                )
        self.log.info(
            "export date %s: pod %s %s",
            self.shoplake_export_date,
            self.image,
            shlex.join([*self.cmds, *self.arguments]),
        )

    def execute(self, context: Any) -> Any:
        self.prepare(context, load_config(self.shoplake_target.name))
        result = super().execute(context)
        extra = asset_event_extra(
            None, self.shoplake_export_date or "?", self.shoplake_target
        )
        emit_asset_event(
            context, self.shoplake_asset, {**extra, "runner": "kubernetes"}
        )
        return result

    def cleanup(self, pod: Any, remote_pod: Any, *args: Any, **kwargs: Any) -> None:
        try:
            super().cleanup(pod, remote_pod, *args, **kwargs)
        except AirflowSkipException:
            raise
        except AirflowException as err:
            code = pod_exit_code(remote_pod, self.base_container_name)
            if code is None:
                raise  # no container exit code: pod-level failure, retried
            check_exit_code(
                code, self.shoplake_export_date or "?", str(err).splitlines()[0]
            )
            raise
