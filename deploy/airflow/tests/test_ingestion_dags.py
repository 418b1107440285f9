"""Unit tests of the ingestion DAGs (one per table definition), run by deploy/airflow/test.sh with
the Airflow venv's python:

    python -m unittest discover -s deploy/airflow/tests -v

AIRFLOW_HOME must point at a scratch home and SHOPLAKE_LAKE at a lake (test.sh sets both). No
cluster, no binary needed here: the binary runs for real in test.sh's `airflow dags test` checks.
The DAG checks run for every table definition found (subTest per table).
"""

from __future__ import annotations

import copy
import io
import json
import os
import sys
import unittest
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

DAGS = Path(__file__).resolve().parent.parent / "dags"
sys.path.insert(0, str(DAGS))

import ingestion_tables as m
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Asset
from airflow.sdk.definitions.param import ParamValidationError
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.sdk.execution_time.context import OutletEventAccessors
from kubernetes.client import models as k8s
from shoplake_airflow import ingest
from shoplake_airflow.table_definitions import (
    asset_uri,
    definitions_folder,
    lake_root,
    read_definitions,
    table_location,
)

TABLE_NAMES = [d.name for d in read_definitions(definitions_folder())]
CFG = {
    **ingest.DEFAULTS,
    "binary": "/opt/shoplake/bin/shoplake",
    "image": "registry.example/shoplake:1.0",
    "source": "s3://raw/shopify",
    "table": "s3://lake/shopify_configuration",
    "aws_region": "eu-west-1",
}
TARGET = ingest.IngestTarget(
    "shopify_configuration", "s3://lake/shopify_configuration", "/defs"
)


def context(logical_date=None, params=None, run_after=None):
    return {
        "logical_date": logical_date,
        "params": {
            "date": None,
            "max_delete_ratio": None,
            "dry_run": False,
            **(params or {}),
        },
        "dag_run": mock.Mock(run_after=run_after),
        "outlet_events": OutletEventAccessors(),  # Airflow's own accessor, as a task gets it
    }


class DagBagTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bag = DagBag(dag_folder=str(DAGS))
        cls.lake = lake_root()

    def dags(self):
        """(table name, its ingestion DAG) for every definition, each in a subTest."""
        self.assertEqual(self.bag.import_errors, {})
        self.assertIn("shopify_configuration", TABLE_NAMES)
        self.assertIn("shopify_usage_daily", TABLE_NAMES)
        for name in TABLE_NAMES:
            with self.subTest(table=name):
                yield name, self.bag.get_dag(f"ingestion_{name}")

    def test_one_dag_per_definition_with_its_tasks(self):
        self.assertEqual(
            {d for d in self.bag.dag_ids if d.startswith("ingestion_")},
            {f"ingestion_{n}" for n in TABLE_NAMES},
        )
        for name, dag in self.dags():
            self.assertIsNotNone(dag)
            self.assertEqual(
                set(dag.task_ids),
                {"choose_runner", "ingest_subprocess", "ingest_kubernetes"},
            )
            self.assertIsInstance(
                dag.get_task("ingest_kubernetes"), KubernetesPodOperator
            )
            for task_id in ("ingest_subprocess", "ingest_kubernetes"):
                target = dag.get_task(task_id).shoplake_target
                self.assertEqual(target.name, name)  # --table-name
        self.assertIsNotNone(
            self.bag.get_dag("ingestion_shopify_configuration")
        )  # id kept

    def test_each_load_declares_its_table_as_an_asset(self):
        definitions = {d.name: d for d in read_definitions(definitions_folder())}
        for name, dag in self.dags():
            location = table_location(self.lake, definitions[name])
            expected = Asset(name=name, uri=asset_uri(location))
            self.assertTrue(
                expected.uri.startswith(("file:///", "s3://")), expected.uri
            )
            for task_id in ("ingest_subprocess", "ingest_kubernetes"):
                task = dag.get_task(task_id)
                self.assertEqual(task.outlets, [expected])
                self.assertEqual(task.shoplake_target.location, location)
            self.assertEqual(dag.get_task("choose_runner").outlets, [])

    def test_schedule_is_daily_0300_utc_and_logical_date_is_run_time(self):
        from airflow.serialization.encoders import coerce_to_core_timetable
        from airflow.timetables.base import TimeRestriction

        for _, dag in self.dags():
            tt = dag.timetable
            self.assertEqual(type(tt).__name__, "CronTriggerTimetable")
            core = coerce_to_core_timetable(tt)
            self.assertEqual(core.summary, "0 3 * * *")
            self.assertEqual(str(core._timezone), "UTC")
            info = core.next_dagrun_info(
                last_automated_data_interval=None,
                restriction=TimeRestriction(
                    earliest=datetime(2019, 4, 1, 5, tzinfo=UTC),
                    latest=None,
                    catchup=True,
                ),
            )
            self.assertEqual(info.logical_date, datetime(2019, 4, 2, 3, tzinfo=UTC))
            self.assertEqual(info.run_after, info.logical_date)  # no data interval
            self.assertEqual(
                m.resolve_export_date(info.logical_date, None, 1), "2019-04-01"
            )

    def test_backfill_settings(self):
        for _, dag in self.dags():
            self.assertEqual(dag.max_active_runs, 2)
            self.assertFalse(
                dag.catchup
            )  # default; SHOPLAKE_DAG_CATCHUP=true turns it on
            load = dag.get_task("ingest_subprocess")
            self.assertGreaterEqual(load.retries, 1)
            callbacks = load.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            self.assertEqual([c.__name__ for c in callbacks], ["alert_on_failure"])

    def test_date_param_validation(self):
        for _, dag in self.dags():
            self.assertEqual(
                set(dag.params.keys()),
                {"date", "max_delete_ratio", "allow_empty", "dry_run"},
            )
            for good in (None, "2019-04-01", "2020-02-29"):
                copy.deepcopy(dag.params.get_param("date")).resolve(good)
            for bad in (
                "2019-4-1",
                "yesterday",
                "2019-04-01T00:00:00",
                "2019-02-30",
                "2019-13-01",
                20190401,
            ):
                with self.assertRaises(ParamValidationError):
                    copy.deepcopy(dag.params.get_param("date")).resolve(bad)
            with self.assertRaises(ParamValidationError):
                copy.deepcopy(dag.params.get_param("max_delete_ratio")).resolve(1.5)


class ResolveExportDateTest(unittest.TestCase):
    def test_scheduled_run_loads_yesterday(self):
        self.assertEqual(
            m.resolve_export_date(datetime(2019, 4, 2, 3, tzinfo=UTC)), "2019-04-01"
        )

    def test_manual_date_param_wins(self):
        self.assertEqual(
            m.resolve_export_date(datetime(2019, 4, 2, 3, tzinfo=UTC), "2018-12-31"),
            "2018-12-31",
        )

    def test_offset_is_configurable(self):
        when = datetime(2019, 4, 2, 3, tzinfo=UTC)
        self.assertEqual(m.resolve_export_date(when, None, 0), "2019-04-02")
        self.assertEqual(m.resolve_export_date(when, None, 2), "2019-03-31")

    def test_date_is_taken_in_utc(self):
        plus5 = timezone(timedelta(hours=5))
        self.assertEqual(
            m.resolve_export_date(datetime(2019, 4, 2, 1, tzinfo=plus5)), "2019-03-31"
        )

    def test_manual_run_without_logical_date_uses_run_after(self):
        self.assertEqual(
            m.resolve_export_date(None, None, 1, datetime(2019, 4, 2, 9, tzinfo=UTC)),
            "2019-04-01",
        )

    def test_invalid_inputs(self):
        for args in [
            (None,),
            (datetime(2019, 4, 2),),
            (None, "2019-02-30"),
            (None, "01/04/2019"),
            (datetime(2019, 4, 2, tzinfo=UTC), None, -1),
        ]:
            with self.subTest(args=args), self.assertRaises(ValueError):
                m.resolve_export_date(*args)


class ArgsTest(unittest.TestCase):
    def test_minimal_args(self):
        self.assertEqual(
            ingest.build_ingest_args("2019-04-01", TARGET, CFG),
            ["ingest", "--date", "2019-04-01", "--table-name", "shopify_configuration",
             "--source", "s3://raw/shopify", "--table", "s3://lake/shopify_configuration",
             "--format", "json"],
        )  # fmt: skip
        usage = ingest.IngestTarget(
            "shopify_usage_daily", "s3://lake/shopify_usage_daily"
        )
        args = ingest.build_ingest_args(
            "2019-04-01", usage, {**CFG, "table": None}, None, "/defs"
        )
        self.assertEqual(
            args[3:7], ["--table-name", "shopify_usage_daily", "--tables", "/defs"]
        )
        self.assertEqual(
            args[args.index("--table") + 1], "s3://lake/shopify_usage_daily"
        )

    def test_optional_flags_and_param_override(self):
        cfg = {
            **CFG,
            "max_delete_ratio": 0.2,
            "metrics_file": "/var/lib/node_exporter/shoplake.prom",
            "pushgateway_url": "http://pgw:9091",
            "lineage_url": "http://marquez:5000",
            "lineage_file": "/tmp/lineage.jsonl",
            "extra_args": ["--max-reject-ratio", "0.05"],
        }
        args = ingest.build_ingest_args(
            "2019-04-01",
            TARGET,
            cfg,
            {"max_delete_ratio": 1, "dry_run": True, "allow_empty": True},
        )
        self.assertIn("--dry-run", args)
        self.assertIn("--allow-empty", args)
        self.assertEqual(args[args.index("--max-delete-ratio") + 1], "1")
        self.assertEqual(
            args[args.index("--metrics-file") + 1],
            "/var/lib/node_exporter/shoplake.prom",
        )
        self.assertEqual(args[args.index("--pushgateway") + 1], "http://pgw:9091")
        self.assertEqual(args[args.index("--lineage-url") + 1], "http://marquez:5000")
        self.assertEqual(args[args.index("--lineage-file") + 1], "/tmp/lineage.jsonl")
        self.assertEqual(args[-2:], ["--format", "json"])

    def test_missing_source_or_another_table_fails_without_retry(self):
        for cfg in ({**CFG, "source": None}, {**CFG, "table": "s3://lake/elsewhere"}):
            with self.subTest(cfg=cfg), self.assertRaises(AirflowFailException):
                ingest.build_ingest_args("2019-04-01", TARGET, cfg)
        # the same place spelled differently is the same table
        ingest.build_ingest_args(
            "2019-04-01", TARGET, {**CFG, "table": "s3://lake/shopify_configuration/"}
        )

    def test_table_overrides_and_legacy_table_key(self):
        variable = {
            "source": "s3://raw",
            "table": "s3://lake/shopify_configuration",
            "max_delete_ratio": 0.1,
            "table_overrides": {"shopify_usage_daily": {"max_delete_ratio": 0.5}},
        }
        with mock.patch.object(
            ingest.Variable, "get", return_value=copy.deepcopy(variable)
        ):
            usage = ingest.load_config("shopify_usage_daily")
        with mock.patch.object(
            ingest.Variable, "get", return_value=copy.deepcopy(variable)
        ):
            legacy = ingest.load_config("shopify_configuration")
        self.assertEqual(
            (usage["max_delete_ratio"], legacy["max_delete_ratio"]), (0.5, 0.1)
        )
        self.assertNotIn(
            "table", usage
        )  # the top-level `table` is shopify_configuration's
        self.assertEqual(legacy["table"], "s3://lake/shopify_configuration")

    def test_no_secret_in_dag_files(self):
        for path in sorted(DAGS.rglob("*.py")):
            text = path.read_text()
            for needle in (
                "AWS_SECRET_ACCESS_KEY",
                "AWS_ACCESS_KEY_ID",
                "AKIA",
                "password",
            ):
                self.assertNotIn(needle, text, path)


class FakeProc:
    def __init__(self, code, stdout="", stderr=""):
        self.code, self.pid = code, 4242
        self.stdout, self.stderr = io.StringIO(stdout), io.StringIO(stderr)

    def wait(self, timeout=None):
        return self.code

    def poll(self):
        return self.code


class RunnersTest(unittest.TestCase):
    """Both runners: the same arguments, the same exit-code mapping, an asset event on success."""

    def setUp(self):
        dag = vars(m)["ingestion_shopify_configuration"]  # the module's own DAG object
        self.sub = dag.get_task("ingest_subprocess")
        self.pod = dag.get_task("ingest_kubernetes")
        self.location = self.sub.shoplake_target.location
        self.cfg = {**CFG, "table": self.location}
        self.ctx = context(datetime(2019, 4, 2, 3, tzinfo=UTC))

    def run_subprocess(self, code, stdout=""):
        calls = []

        def popen(argv, **kwargs):
            calls.append((argv, kwargs["env"]))
            return FakeProc(code, stdout, "INFO something\n")

        with (
            mock.patch.object(ingest, "load_config", return_value=dict(self.cfg)),
            mock.patch.object(ingest.subprocess, "Popen", side_effect=popen),
            mock.patch.dict(
                os.environ,
                {"SHOPLAKE_TABLE": "/elsewhere", "SHOPLAKE_REJECTS_TABLE": "/x"},
            ),
        ):
            try:
                return self.sub.execute(self.ctx), calls
            finally:
                self.assertEqual(len(calls), 1)

    def test_same_arguments_for_both_runners(self):
        _, calls = self.run_subprocess(
            0, '{"status": "committed", "table_version": 3}\n'
        )
        argv, env = calls[0]
        self.pod.prepare(self.ctx, dict(self.cfg))
        self.assertEqual(argv[0], CFG["binary"])
        tables_dir = self.sub.shoplake_target.tables_dir
        self.assertEqual(
            argv[6:8], ["--tables", tables_dir]
        )  # the folder the DAG was built from
        self.assertEqual(
            argv[1:6] + argv[8:], self.pod.arguments
        )  # pods: the image's definitions
        self.pod.prepare(self.ctx, {**self.cfg, "tables_dir": tables_dir})
        self.assertEqual(argv[1:], self.pod.arguments)
        self.assertEqual(self.pod.image, CFG["image"])
        self.assertEqual(self.pod.cmds, [])  # the image ENTRYPOINT is shoplake
        self.assertFalse(self.pod.automount_service_account_token)
        self.assertEqual(env["AWS_REGION"], "eu-west-1")
        self.assertNotIn(
            "SHOPLAKE_TABLE", env
        )  # the worker's per-table settings never leak
        self.assertNotIn("SHOPLAKE_REJECTS_TABLE", env)
        self.assertEqual(env["OPENLINEAGE_NAMESPACE"], "shoplake")
        pod_env = {e.name: e.value for e in self.pod.env_vars}
        self.assertEqual(pod_env["AWS_REGION"], "eu-west-1")
        self.assertEqual(pod_env["OPENLINEAGE_NAMESPACE"], "shoplake")

    def test_success_attaches_the_report_to_the_asset_event(self):
        report = {"status": "committed", "table_version": 3, "date": "2019-04-01", "rows_valid": 7,
                  "rows_inserted": 7, "checks": [], "duration_ms": 5}  # fmt: skip
        self.run_subprocess(0, json.dumps(report) + "\n")
        extra = self.ctx["outlet_events"][self.sub.shoplake_asset].extra
        self.assertEqual(
            extra,
            {"table_name": "shopify_configuration", "date": "2019-04-01", "table": self.location,
             "status": "committed", "table_version": 3, "rows_valid": 7, "rows_inserted": 7},
        )  # fmt: skip

    def test_subprocess_exit_code_mapping(self):
        report, _ = self.run_subprocess(
            0, 'noise\n{"status": "unchanged", "table_version": 3}\n'
        )
        self.assertEqual(report, {"status": "unchanged", "table_version": 3})
        for code in (3, 5, 6):
            with (
                self.subTest(code=code),
                self.assertRaises(ingest.ShoplakeRunError) as cm,
            ):
                self.run_subprocess(code)
            self.assertNotIsInstance(cm.exception, AirflowFailException)  # retried
            self.assertEqual(
                (cm.exception.exit_code, cm.exception.export_date), (code, "2019-04-01")
            )
        for code in (1, 2, 4, 137, -9):
            with self.subTest(code=code), self.assertRaises(AirflowFailException) as cm:
                self.run_subprocess(code)
            self.assertEqual(cm.exception.exit_code, code)

    def test_missing_binary_fails_without_retry(self):
        with (
            mock.patch.object(
                ingest,
                "load_config",
                return_value={**self.cfg, "binary": "/nonexistent/shoplake"},
            ),
            self.assertRaises(AirflowFailException),
        ):
            self.sub.execute(self.ctx)

    @staticmethod
    def remote_pod(exit_code):
        statuses = None
        if exit_code is not None:
            statuses = [
                k8s.V1ContainerStatus(
                    name="base",
                    image="shoplake",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=k8s.V1ContainerState(
                        terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code)
                    ),
                )
            ]
        return k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name="shoplake-ingest-x", namespace="default"),
            status=k8s.V1PodStatus(phase="Failed", container_statuses=statuses),
        )

    def pod_cleanup(self, exit_code):
        self.pod.prepare(self.ctx, dict(self.cfg))
        failure = AirflowException("Pod shoplake-ingest-x returned a failure.")
        with mock.patch.object(KubernetesPodOperator, "cleanup", side_effect=failure):
            self.pod.cleanup(None, self.remote_pod(exit_code))

    def test_pod_exit_code_mapping(self):
        self.assertEqual(ingest.pod_exit_code(self.remote_pod(4)), 4)
        self.assertIsNone(ingest.pod_exit_code(self.remote_pod(None)))
        for code in (1, 2, 4):
            with self.subTest(code=code), self.assertRaises(AirflowFailException) as cm:
                self.pod_cleanup(code)
            self.assertEqual(
                (cm.exception.exit_code, cm.exception.export_date), (code, "2019-04-01")
            )
        for code in (
            3,
            5,
            None,
        ):  # None: evicted / image pull error, the provider's own error
            with self.subTest(code=code), self.assertRaises(AirflowException) as cm:
                self.pod_cleanup(code)
            self.assertNotIsInstance(cm.exception, AirflowFailException)
        with mock.patch.object(KubernetesPodOperator, "cleanup", return_value=None):
            self.pod.cleanup(None, self.remote_pod(0))  # success: no exception

    def test_pod_gets_the_lineage_api_key_from_a_secret(self):
        secret = {"name": "openlineage", "key": "api-key"}
        self.pod.prepare(self.ctx, {**self.cfg, "lineage_api_key_secret": secret})
        (var,) = [e for e in self.pod.env_vars if e.name == "OPENLINEAGE_API_KEY"]
        self.assertIsNone(var.value)
        self.assertEqual(var.value_from.secret_key_ref.name, "openlineage")

    def test_failure_callback_logs_an_alert(self):
        exc = ingest.ShoplakeFatalError("boom", 4, "2019-04-01")
        ti = mock.Mock(
            dag_id="ingestion_shopify_configuration",
            task_id="ingest_subprocess",
            run_id="r1",
            try_number=1,
        )
        with self.assertLogs(ingest.log, "ERROR") as logs:
            ingest.alert_on_failure({"ti": ti, "exception": exc})
        self.assertIn(
            "SHOPLAKE ALERT dag=ingestion_shopify_configuration task=ingest_subprocess",
            logs.output[0],
        )
        self.assertIn("export_date=2019-04-01 exit_code=4", logs.output[0])


if __name__ == "__main__":
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    unittest.main()
