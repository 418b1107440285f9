"""Unit tests of the ingestion DAG, run by deploy/airflow/test.sh with the Airflow venv's python:

    python -m unittest discover -s deploy/airflow/tests -v

AIRFLOW_HOME must point at a scratch home (test.sh makes one). No cluster, no binary needed here:
the binary runs for real in test.sh's `airflow dags test` checks.
"""

from __future__ import annotations

import copy
import io
import os
import sys
import unittest
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

DAGS = Path(__file__).resolve().parent.parent / "dags"
sys.path.insert(0, str(DAGS))

import ingestion_shopify_configuration as m
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.definitions.param import ParamValidationError
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from kubernetes.client import models as k8s

CFG = {
    **m.DEFAULTS,
    "binary": "/opt/shoplake/bin/shoplake",
    "image": "registry.example/shoplake:1.0",
    "source": "s3://raw/shopify",
    "table": "s3://lake/shopify_configuration",
    "aws_region": "eu-west-1",
}


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
    }


class DagBagTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bag = DagBag(dag_folder=str(DAGS))
        cls.dag = cls.bag.get_dag(m.DAG_ID)

    def test_imports_without_errors(self):
        self.assertEqual(self.bag.import_errors, {})
        self.assertIsNotNone(self.dag)
        self.assertEqual(self.dag.dag_id, "ingestion_shopify_configuration")
        self.assertEqual(
            set(self.dag.task_ids),
            {"choose_runner", "ingest_subprocess", "ingest_kubernetes"},
        )
        self.assertIsInstance(
            self.dag.get_task("ingest_kubernetes"), KubernetesPodOperator
        )

    def test_schedule_is_daily_0300_utc_and_logical_date_is_run_time(self):
        from airflow.serialization.encoders import coerce_to_core_timetable
        from airflow.timetables.base import TimeRestriction

        tt = self.dag.timetable
        self.assertEqual(type(tt).__name__, "CronTriggerTimetable")
        core = coerce_to_core_timetable(tt)
        self.assertEqual(core.summary, "0 3 * * *")
        self.assertEqual(str(core._timezone), "UTC")
        info = core.next_dagrun_info(
            last_automated_data_interval=None,
            restriction=TimeRestriction(
                earliest=datetime(2019, 4, 1, 5, tzinfo=UTC), latest=None, catchup=True
            ),
        )
        self.assertEqual(info.logical_date, datetime(2019, 4, 2, 3, tzinfo=UTC))
        self.assertEqual(
            info.run_after, info.logical_date
        )  # no data interval: logical date = run time
        self.assertEqual(
            m.resolve_export_date(info.logical_date, None, 1), "2019-04-01"
        )

    def test_backfill_settings(self):
        self.assertEqual(self.dag.max_active_runs, 2)
        self.assertFalse(
            self.dag.catchup
        )  # default; SHOPLAKE_DAG_CATCHUP=true turns it on
        ingest = self.dag.get_task("ingest_subprocess")
        self.assertGreaterEqual(ingest.retries, 1)
        callbacks = ingest.on_failure_callback
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        self.assertEqual([c.__name__ for c in callbacks], ["alert_on_failure"])

    def test_date_param_validation(self):
        for good in (None, "2019-04-01", "2020-02-29"):
            copy.deepcopy(self.dag.params.get_param("date")).resolve(good)
        for bad in (
            "2019-4-1",
            "yesterday",
            "2019-04-01T00:00:00",
            "2019-02-30",
            "2019-13-01",
            20190401,
        ):
            with self.subTest(bad=bad), self.assertRaises(ParamValidationError):
                copy.deepcopy(self.dag.params.get_param("date")).resolve(bad)
        with self.assertRaises(ParamValidationError):
            copy.deepcopy(self.dag.params.get_param("max_delete_ratio")).resolve(1.5)


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
        self.assertEqual(
            m.resolve_export_date(datetime(2019, 4, 2, 3, tzinfo=UTC), None, 0),
            "2019-04-02",
        )
        self.assertEqual(
            m.resolve_export_date(datetime(2019, 4, 2, 3, tzinfo=UTC), None, 2),
            "2019-03-31",
        )

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
            m.build_ingest_args("2019-04-01", CFG),
            [
                "ingest",
                "--date",
                "2019-04-01",
                "--source",
                "s3://raw/shopify",
                "--table",
                "s3://lake/shopify_configuration",
                "--format",
                "json",
            ],
        )

    def test_optional_flags_and_param_override(self):
        cfg = {
            **CFG,
            "max_delete_ratio": 0.2,
            "metrics_file": "/var/lib/node_exporter/shoplake.prom",
            "pushgateway_url": "http://pgw:9091",
            "extra_args": ["--max-reject-ratio", "0.05"],
        }
        args = m.build_ingest_args(
            "2019-04-01",
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
        self.assertEqual(args[-2:], ["--format", "json"])

    def test_missing_source_or_table_fails_without_retry(self):
        for key in ("source", "table"):
            with self.subTest(key=key), self.assertRaises(AirflowFailException):
                m.build_ingest_args("2019-04-01", {**CFG, key: None})

    def test_no_secret_in_dag_file(self):
        text = (DAGS / "ingestion_shopify_configuration.py").read_text()
        for needle in (
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AKIA",
            "password",
        ):
            self.assertNotIn(needle, text)


class FakeProc:
    def __init__(self, code, stdout="", stderr=""):
        self.code, self.pid = code, 4242
        self.stdout, self.stderr = io.StringIO(stdout), io.StringIO(stderr)

    def wait(self, timeout=None):
        return self.code

    def poll(self):
        return self.code


class RunnersTest(unittest.TestCase):
    """Both runners: the same arguments, the same exit-code mapping."""

    def setUp(self):
        # The module's own DAG object (a DagBag loads the file as another module, whose globals
        # mock.patch.object(m, ...) would not reach).
        self.sub = m.dag.get_task("ingest_subprocess")
        self.pod = m.dag.get_task("ingest_kubernetes")
        self.ctx = context(datetime(2019, 4, 2, 3, tzinfo=UTC))

    def run_subprocess(self, code, stdout=""):
        calls = []

        def popen(argv, **kwargs):
            calls.append((argv, kwargs["env"]))
            return FakeProc(code, stdout, "INFO something\n")

        with (
            mock.patch.object(m, "load_config", return_value=dict(CFG)),
            mock.patch.object(m.subprocess, "Popen", side_effect=popen),
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
        self.pod.prepare(self.ctx, dict(CFG))
        self.assertEqual(argv[0], CFG["binary"])
        self.assertEqual(argv[1:], self.pod.arguments)
        self.assertEqual(self.pod.arguments, m.build_ingest_args("2019-04-01", CFG))
        self.assertEqual(self.pod.image, CFG["image"])
        self.assertEqual(self.pod.cmds, [])  # the image ENTRYPOINT is shoplake
        self.assertFalse(self.pod.automount_service_account_token)
        self.assertEqual(env["AWS_REGION"], "eu-west-1")
        self.assertEqual(
            {e.name: e.value for e in self.pod.env_vars}, {"AWS_REGION": "eu-west-1"}
        )

    def test_subprocess_exit_code_mapping(self):
        report, _ = self.run_subprocess(
            0, 'noise\n{"status": "unchanged", "table_version": 3}\n'
        )
        self.assertEqual(report, {"status": "unchanged", "table_version": 3})
        for code in (3, 5):
            with self.subTest(code=code), self.assertRaises(m.ShoplakeRunError) as cm:
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
                m,
                "load_config",
                return_value={**CFG, "binary": "/nonexistent/shoplake"},
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
        self.pod.prepare(self.ctx, dict(CFG))
        failure = AirflowException("Pod shoplake-ingest-x returned a failure.")
        with mock.patch.object(KubernetesPodOperator, "cleanup", side_effect=failure):
            self.pod.cleanup(None, self.remote_pod(exit_code))

    def test_pod_exit_code_mapping(self):
        self.assertEqual(m.pod_exit_code(self.remote_pod(4)), 4)
        self.assertIsNone(m.pod_exit_code(self.remote_pod(None)))
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

    def test_failure_callback_logs_an_alert(self):
        exc = m.ShoplakeFatalError("boom", 4, "2019-04-01")
        ti = mock.Mock(
            dag_id=m.DAG_ID, task_id="ingest_subprocess", run_id="r1", try_number=1
        )
        with self.assertLogs(m.log, "ERROR") as logs:
            m.alert_on_failure({"ti": ti, "exception": exc})
        self.assertIn(
            "SHOPLAKE ALERT dag=ingestion_shopify_configuration task=ingest_subprocess",
            logs.output[0],
        )
        self.assertIn("export_date=2019-04-01 exit_code=4", logs.output[0])


if __name__ == "__main__":
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    unittest.main()
