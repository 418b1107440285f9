"""Run time of the `shopify_redact` DAG (shopify_redact.py): `shoplake erase` for every table.

Nothing here runs when the DAG file is parsed. Each task runs the shoplake binary on the worker,
like the ingestion DAGs' subprocess runner (ingest.py: the same Variable `shoplake_ingestion`, the
same binary, AWS settings, stderr streamed as `[shoplake] ...`, the same exit-code mapping):

  erase   shoplake erase --tables <dir> --lake <lake> --all-tables --key <shop_id> [--purge]
                  --reason "shop/redact (dag run <run_id>)[: <reason>]" --format json
  verify  shoplake erase --verify --tables <dir> --lake <lake> --all-tables --key <shop_id>
                  --format json

The key column of every table is the shop's id (shopify_configuration `id`, shopify_usage_daily
`shop_id`), so one `--key` with `--all-tables` reaches them all.

The erased value is never written anywhere by the DAG: the reason recorded in each table's commit
holds the DAG run id, not the shop id or domain (either would stay in the Delta log, which no purge
rewrites), and both are masked in the task logs (Airflow's secrets masker) and replaced by
`<shop_id>` in the logged command line. The erasure key SHOPLAKE_ERASURE_KEY comes from the
Variable `shoplake_erasure_secret` (else the worker's environment), masked, never logged.

Exit codes (ingest.check_exit_code): 0 success; 3, 5, 6 retried after retry_delay; 1, 2, 4 and
anything else fail at once, no retry, alert. For `verify`, 4 means some object (data file,
change-data file, commit, checkpoint, current or older) still holds the value: the task logs each
one and fails. Its JSON lines (one object per table and per rejects table: objects read, those
holding the value, the value's keyed hash, `result`) are the auditor's evidence: pushed to XCom
under the key `evidence` whatever the outcome.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret

from shoplake_airflow.ingest import (
    ERASURE_KEY_ENV,
    ERASURE_KEY_VARIABLE,
    LEGACY_TABLE_NAME,
    PER_TABLE_ENV,
    IngestTarget,
    ShoplakeFatalError,
    aws_env,
    check_exit_code,
    check_table_location,
    erasure_key_env,
    load_config,
    run_shoplake,
)

DAG_ID = "shopify_redact"
SHOP_ID_PATTERN = r"^\S+$"
SHOP_DOMAIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]*\.myshopify\.com$"
EVIDENCE_XCOM_KEY = "evidence"
MODES = ("erase", "verify")
# shoplake reads these too; the DAG names the lake and the definitions explicitly.
IGNORED_ENV = (*PER_TABLE_ENV, "SHOPLAKE_LAKE", "SHOPLAKE_TABLES")


@dataclass(frozen=True)
class RedactTarget:
    """Where the tables are, fixed when the DAG file is parsed."""

    lake: str  # --lake: SHOPLAKE_LAKE
    tables_dir: str  # --tables: the definitions folder the DAG file was built from
    table_names: tuple[str, ...]  # every definition: verify must report on each
    # shopify_configuration's location, which the Variable's `table` must agree with
    legacy_location: str | None = None


def redact_reason(
    run_id: str, shop_id: str, shop_domain: str | None, reason: str | None
) -> str:
    """The reason recorded in each table's commit: the DAG run, then the caller's text. Never the
    shop id or domain (replaced, should the run id or the text hold them): the Delta log keeps
    every commit's reason for ever, and `erase --verify` would not name it."""
    text = f"shop/redact (dag run {run_id})"
    if reason and reason.strip():
        text += f": {reason.strip()}"
    for value, placeholder in ((shop_domain, "<shop_domain>"), (shop_id, "<shop_id>")):
        if value:
            text = text.replace(value, placeholder)
    return text


def build_erase_args(
    target: RedactTarget,
    shop_id: str,
    reason: str,
    purge: bool,
    tables_dir: str | None = None,
) -> list[str]:
    args = ["erase", "--tables", str(tables_dir or target.tables_dir), "--lake", target.lake,
            "--all-tables", "--key", shop_id]  # fmt: skip
    if purge:
        args.append("--purge")
    return [*args, "--reason", reason, "--format", "json"]


def build_verify_args(
    target: RedactTarget, shop_id: str, tables_dir: str | None = None
) -> list[str]:
    return ["erase", "--verify", "--tables", str(tables_dir or target.tables_dir),
            "--lake", target.lake, "--all-tables", "--key", shop_id, "--format", "json"]  # fmt: skip


def shown_argv(argv: list[str], shop_id: str) -> str:
    """The command line as logged: the shop id replaced by <shop_id>."""
    return shlex.join("<shop_id>" if a == shop_id else a for a in argv)


def parse_json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line that is a JSON object (`--format json` with --all-tables: one a table)."""
    objects = []
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


def holding_objects(evidence: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(table, kind, path) of every object `erase --verify` says still holds the value."""
    return [
        (str(e.get("table")), str(h.get("kind")), str(h.get("path")))
        for e in evidence
        for h in e.get("holding") or []
    ]


def evidence_problems(
    evidence: list[dict[str, Any]], table_names: tuple[str, ...]
) -> list[str]:
    """Why `evidence` does not prove the value absent from every table (empty: it does)."""
    problems = []
    reported = {e.get("table_name") for e in evidence}
    for name in table_names:
        if name not in reported:
            problems.append(f"no verification of table {name}")
    for e in evidence:
        if e.get("result") != "absent" or e.get("holding"):
            problems.append(f"{e.get('table')}: result {e.get('result')!r}")
    return problems


class ShoplakeRedactOperator(BaseOperator):
    """One step of the redaction (`shoplake_mode`: erase or verify), on the worker."""

    ui_color = "#f5b7b1"

    def __init__(
        self, *, shoplake_mode: str, shoplake_target: RedactTarget, **kwargs: Any
    ):
        if shoplake_mode not in MODES:
            raise ValueError(
                f"shoplake_mode must be one of {MODES}, not {shoplake_mode!r}"
            )
        super().__init__(**kwargs)
        self.shoplake_mode = shoplake_mode
        self.shoplake_target = shoplake_target
        self._proc = None

    def plan(self, context: Any, cfg: dict[str, Any]) -> tuple[str, list[str]]:
        """(shop id, shoplake arguments) of this task run; refuses what cannot be right."""
        params = context.get("params") or {}
        shop_id = params.get("shop_id")
        if (
            not isinstance(shop_id, str)
            or not shop_id.strip()
            or shop_id != shop_id.strip()
        ):
            raise AirflowFailException(
                "param shop_id: a non-empty string without spaces"
            )
        if cfg.get("runner", "subprocess") != "subprocess":
            raise AirflowFailException(
                f"{DAG_ID} runs shoplake on the worker; runner {cfg['runner']!r} is not supported: "
                f"set table_overrides.{DAG_ID}.runner to subprocess (and its binary)"
            )
        tables_dir = cfg.get("tables_dir") or self.shoplake_target.tables_dir
        if self.shoplake_mode == "verify":
            return shop_id, build_verify_args(self.shoplake_target, shop_id, tables_dir)
        dag_run = context.get("dag_run")
        run_id = context.get("run_id") or getattr(dag_run, "run_id", None) or "?"
        reason = redact_reason(
            run_id, shop_id, params.get("shop_domain"), params.get("reason")
        )
        purge = bool(params.get("purge", True))
        return shop_id, build_erase_args(
            self.shoplake_target, shop_id, reason, purge, tables_dir
        )

    def check_config(self) -> dict[str, Any]:
        """The top-level `shoplake_ingestion` settings (table_overrides.shopify_redact applies),
        after checking that shopify_configuration's configured location is the one erased."""
        target = self.shoplake_target
        if target.legacy_location:
            legacy = IngestTarget(LEGACY_TABLE_NAME, target.legacy_location)
            check_table_location(legacy, load_config(LEGACY_TABLE_NAME))
        return load_config(DAG_ID)

    def execute(self, context: Any) -> Any:
        params = context.get("params") or {}
        # shoplake never logs the shop id or domain; nor may anything else in this task
        for value in (params.get("shop_id"), params.get("shop_domain")):
            if value and isinstance(value, str):
                mask_secret(value)
        cfg = self.check_config()
        shop_id, args = self.plan(context, cfg)
        key_env = erasure_key_env()
        if self.shoplake_mode == "erase" and not (
            key_env or os.environ.get(ERASURE_KEY_ENV)
        ):
            raise AirflowFailException(
                f"no erasure key: set the Variable {ERASURE_KEY_VARIABLE} (a secret of at least "
                f"16 bytes, the same for every run) or {ERASURE_KEY_ENV} in the worker's environment"
            )
        argv = [str(cfg["binary"]), *args]
        env = {k: v for k, v in os.environ.items() if k not in IGNORED_ENV}
        env.update(aws_env(cfg))
        env.update(key_env)
        self.log.info("running %s", shown_argv(argv, shop_id))
        exit_code, stdout, last_stderr = run_shoplake(self, argv, env)
        lines = parse_json_lines(stdout)
        for line in lines:
            self.log.info(
                "shoplake %s: %s", self.shoplake_mode, json.dumps(line, sort_keys=True)
            )
        if not lines and stdout.strip():
            self.log.warning("shoplake stdout (no JSON): %s", stdout.strip())
        self.log.info("shoplake exit code %s", exit_code)
        command = "erase" if self.shoplake_mode == "erase" else "erase --verify"
        if self.shoplake_mode == "erase":
            check_exit_code(exit_code, None, last_stderr, command=command)
            return lines
        return self.judge_evidence(context, lines, exit_code, last_stderr, command)

    def judge_evidence(
        self,
        context: Any,
        evidence: list[dict[str, Any]],
        exit_code: int,
        detail: str,
        command: str,
    ) -> dict[str, Any]:
        """verify: XCom `evidence`, each object still holding the value logged, the exit code
        mapped; an exit 0 whose evidence does not cover every table as absent fails too."""
        context["ti"].xcom_push(key=EVIDENCE_XCOM_KEY, value=evidence)
        holding = holding_objects(evidence)
        for table, kind, path in holding:
            self.log.error(
                "SHOPLAKE STILL HOLDS THE VALUE table=%s kind=%s path=%s",
                table,
                kind,
                path,
            )
        check_exit_code(exit_code, None, detail, command=command)
        problems = evidence_problems(evidence, self.shoplake_target.table_names)
        if problems:
            raise ShoplakeFatalError(
                f"shoplake {command} exited 0 but its evidence does not show the value absent: "
                + "; ".join(problems),
                exit_code,
                None,
            )
        summary = {
            "result": "absent",
            "tables": sorted({str(e.get("table_name")) for e in evidence}),
            "objects_checked": sum(
                int(e.get("objects_checked") or 0) for e in evidence
            ),
            "value_hash": next(
                (e["value_hash"] for e in evidence if e.get("value_hash")), None
            ),
        }
        self.log.info("SHOPLAKE REDACTED %s", json.dumps(summary, sort_keys=True))
        return summary

    def on_kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            self.log.info("terminating shoplake (pid %s)", self._proc.pid)
            self._proc.terminate()
