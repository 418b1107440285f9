"""Daily load of the Shopify configuration export into the Delta table `shopify_configuration`.

Airflow 3 (`airflow.sdk`). One run loads one export date with `shoplake ingest --format json`;
the load is an idempotent MERGE, so re-runs, clears and back-fills are safe.

Which date a run loads (see `resolve_export_date`):
  * a manual trigger with the `date` param (YYYY-MM-DD) loads that date;
  * otherwise: the run's logical date (UTC) minus `date_offset_days` (default 1). The schedule is
    a `CronTriggerTimetable` at 03:00 UTC, whose logical date is the run time itself, so the run
    at 2019-04-02T03:00Z loads the export of 2019-04-01 (yesterday's export is complete after
    midnight). A manual run without `date` loads the day before its trigger time.

Configuration, read when the task runs (never when the file is parsed), from the JSON Variable
`shoplake_ingestion` (example: deploy/airflow/variables.json), each key falling back to the
worker's environment: runner (subprocess|kubernetes), binary (SHOPLAKE_BIN), source
(SHOPLAKE_SOURCE), table (SHOPLAKE_TABLE), aws_region (AWS_REGION), aws_endpoint_url
(AWS_ENDPOINT_URL), image, namespace, service_account, date_offset_days, and optional ingest
flags. No secret lives here: AWS credentials come from the worker's environment / instance
profile / IRSA, or the pod's service account.

Scheduling knobs read from the environment of the DAG processor when the file is parsed
(cheap, no database access): SHOPLAKE_DAG_RETRIES, SHOPLAKE_DAG_RETRY_DELAY_SECONDS,
SHOPLAKE_DAG_MAX_ACTIVE_RUNS, SHOPLAKE_DAG_CATCHUP, SHOPLAKE_DAG_START_DATE.

shoplake exit codes -> Airflow:
  0 success (also "nothing to change")   -> success, report returned as XCom
  3 export not there yet, 5 storage/conflicts -> AirflowException: retried after retry_delay
  1 internal, 2 configuration, 4 data refused, anything else -> AirflowFailException: failed at
    once, no retry, on_failure_callback alerts
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import threading
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG, BaseOperator, CronTriggerTimetable, Param, Variable, task
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
)
from kubernetes.client import models as k8s

log = logging.getLogger(__name__)

DAG_ID = "ingestion_shopify_configuration"
CONFIG_VARIABLE = "shoplake_ingestion"
SCHEDULE_CRON = "0 3 * * *"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"

# shoplake's exit codes (PRODUCT.md "Exit codes").
EXIT_OK = 0
RETRYABLE_EXIT_CODES = {
    3: "export for the date not there yet",
    5: "storage unavailable or commit conflicts",
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
}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


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


def build_ingest_args(
    export_date: str, cfg: dict[str, Any], params: dict[str, Any] | None = None
) -> list[str]:
    """The `shoplake ingest` arguments (without the program) for both runners."""
    params = params or {}
    for key in ("source", "table"):
        if not cfg.get(key):
            raise AirflowFailException(
                f"shoplake {key} not configured: set '{key}' in Variable {CONFIG_VARIABLE} "
                f"or {ENV_FALLBACKS[key]} in the worker's environment"
            )
    args = [
        "ingest",
        "--date",
        export_date,
        "--source",
        str(cfg["source"]),
        "--table",
        str(cfg["table"]),
    ]
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


class ShoplakeRunError(AirflowException):
    """shoplake failed with a code worth retrying (3, 5): Airflow retries after retry_delay."""

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


def check_exit_code(exit_code: int | None, export_date: str, detail: str = "") -> None:
    """Return on success; raise the exception that gives Airflow the right retry behaviour."""
    if exit_code == EXIT_OK:
        return
    suffix = f": {detail}" if detail else ""
    if exit_code in RETRYABLE_EXIT_CODES:
        raise ShoplakeRunError(
            f"shoplake ingest {export_date} exited {exit_code} ({RETRYABLE_EXIT_CODES[exit_code]}), "
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
        f"shoplake ingest {export_date} exited {exit_code} ({meaning}), not retried{suffix}",
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


def load_config() -> dict[str, Any]:
    """DEFAULTS < worker environment < Variable `shoplake_ingestion` (read at run time)."""
    cfg = dict(DEFAULTS)
    for key, env_name in ENV_FALLBACKS.items():
        if os.environ.get(env_name):
            cfg[key] = os.environ[env_name]
    variable = Variable.get(CONFIG_VARIABLE, default=None, deserialize_json=True) or {}
    if not isinstance(variable, dict):
        raise AirflowFailException(f"Variable {CONFIG_VARIABLE} must be a JSON object")
    cfg.update({k: v for k, v in variable.items() if v is not None and v != ""})
    return cfg


def plan_run(context: Any, cfg: dict[str, Any]) -> tuple[str, list[str]]:
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
    return export_date, build_ingest_args(export_date, cfg, params)


def _attempt_fields(context: Any) -> tuple[tuple[Any, ...], Any]:
    """What the callbacks log of a task attempt: (dag, task, run, export date,
    exit code, try), and the exception that ended it."""
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    fields = (
        getattr(ti, "dag_id", DAG_ID),
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


# --------------------------------------------------------------------------- operators


class ShoplakeIngestOperator(BaseOperator):
    """Runs the shoplake binary on the worker (runner "subprocess")."""

    ui_color = "#d6eaf8"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._proc: subprocess.Popen[str] | None = None

    def execute(self, context: Any) -> dict[str, Any] | None:
        cfg = load_config()
        export_date, args = plan_run(context, cfg)
        argv = [str(cfg["binary"]), *args]
        env = {**os.environ, **aws_env(cfg)}
        self.log.info("export date %s: running %s", export_date, shlex.join(argv))
        try:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        except OSError as err:  # binary missing or not executable: configuration
            raise ShoplakeFatalError(
                f"cannot run {argv[0]}: {err}", None, export_date
            ) from err
        stdout_chunks: list[str] = []
        last_stderr = ""  # shoplake's last log line: the error message on failure
        reader = threading.Thread(
            target=lambda: stdout_chunks.append(proc.stdout.read())
        )
        reader.start()
        self._proc = proc
        try:
            for line in proc.stderr:  # shoplake's logs, streamed into the task log
                if line.strip():
                    last_stderr = line.strip()
                    self.log.info("[shoplake] %s", last_stderr)
            exit_code = proc.wait()
        except BaseException:
            # execution_timeout, SIGTERM: do not leave shoplake running
            self.on_kill()
            raise
        finally:
            reader.join(timeout=10)
            self._proc = None
        stdout = "".join(stdout_chunks)
        report = parse_report(stdout)
        if report is not None:
            self.log.info("shoplake report: %s", json.dumps(report, sort_keys=True))
        elif stdout.strip():
            self.log.warning("shoplake stdout (no JSON report): %s", stdout.strip())
        self.log.info("shoplake exit code %s", exit_code)
        check_exit_code(exit_code, export_date, last_stderr)
        return report

    def on_kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            self.log.info("terminating shoplake (pid %s)", self._proc.pid)
            self._proc.terminate()


class ShoplakePodOperator(KubernetesPodOperator):
    """Runs the shoplake container image (runner "kubernetes"), same arguments as the subprocess.

    Image, namespace, service account (IRSA for S3) and arguments are resolved when the task
    runs. A failed pod is mapped like the subprocess: container exit code 3/5 -> retry,
    1/2/4 -> AirflowFailException; a pod that failed without an exit code (eviction, image pull)
    keeps KubernetesPodOperator's plain AirflowException and is retried.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "shoplake-ingest")
        kwargs.setdefault("get_logs", True)
        kwargs.setdefault("on_finish_action", "delete_pod")
        # IRSA credentials are projected by EKS; the pod needs no Kubernetes API token.
        kwargs.setdefault("automount_service_account_token", False)
        # Exit codes are mapped in cleanup(), which the synchronous mode runs.
        kwargs.setdefault("deferrable", False)
        super().__init__(**kwargs)
        self.shoplake_export_date: str | None = None

    def prepare(self, context: Any, cfg: dict[str, Any]) -> None:
        if not cfg.get("image"):
            raise AirflowFailException(
                f"runner kubernetes needs 'image' in Variable {CONFIG_VARIABLE}"
            )
        self.shoplake_export_date, self.arguments = plan_run(context, cfg)
        self.image = str(cfg["image"])
        self.cmds = [str(c) for c in cfg.get("command") or []]  # [] = ENTRYPOINT
        self.namespace = str(cfg["namespace"])
        if cfg.get("service_account"):
            self.service_account_name = str(cfg["service_account"])
        self.env_vars = [k8s.V1EnvVar(name=k, value=v) for k, v in aws_env(cfg).items()]
        self.log.info(
            "export date %s: pod %s %s",
            self.shoplake_export_date,
            self.image,
            shlex.join([*self.cmds, *self.arguments]),
        )

    def execute(self, context: Any) -> Any:
        self.prepare(context, load_config())
        return super().execute(context)

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


# --------------------------------------------------------------------------- the DAG

default_args = {
    "owner": "data-engineering",
    "retries": _env_int("SHOPLAKE_DAG_RETRIES", 6),
    "retry_delay": timedelta(
        seconds=_env_int("SHOPLAKE_DAG_RETRY_DELAY_SECONDS", 1800)
    ),
    "execution_timeout": timedelta(hours=3),
    "on_failure_callback": alert_on_failure,
    "on_retry_callback": log_retry,
}

with DAG(
    dag_id=DAG_ID,
    description="Load the daily Shopify configuration export into Delta (shoplake ingest)",
    schedule=CronTriggerTimetable(SCHEDULE_CRON, timezone="UTC"),
    start_date=datetime.fromisoformat(
        os.environ.get("SHOPLAKE_DAG_START_DATE") or "2019-04-02T00:00:00+00:00"
    ),
    catchup=os.environ.get("SHOPLAKE_DAG_CATCHUP", "false").strip().lower()
    in ("1", "true", "yes"),
    max_active_runs=_env_int("SHOPLAKE_DAG_MAX_ACTIVE_RUNS", 2),
    default_args=default_args,
    params={
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
    },
    tags=["shoplake", "delta", "shopify"],
    doc_md=__doc__,
) as dag:

    @task.branch(task_id="choose_runner")
    def choose_runner() -> str:
        runner = load_config()["runner"]
        if runner not in ("subprocess", "kubernetes"):
            raise AirflowFailException(
                f"runner must be subprocess or kubernetes, not {runner!r}"
            )
        return f"ingest_{runner}"

    branch = choose_runner()
    branch >> [
        ShoplakeIngestOperator(task_id="ingest_subprocess"),
        ShoplakePodOperator(task_id="ingest_kubernetes"),
    ]
