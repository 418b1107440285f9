"""Unit tests of the `shopify_redact` DAG (dags/shopify_redact.py, dags/shoplake_airflow/redact.py)
and of the erasure key the loads share with it, run by deploy/airflow/test.sh:

    python -m unittest discover -s deploy/airflow/tests -v

AIRFLOW_HOME must point at a scratch home and SHOPLAKE_LAKE at a lake (test.sh sets both). The
binary is faked here (subprocess.Popen); test.sh runs the DAG for real with `airflow dags test`.
"""

from __future__ import annotations

import copy
import io
import json
import os
import sys
import unittest
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

DAGS = Path(__file__).resolve().parent.parent / "dags"
sys.path.insert(0, str(DAGS))

import ingestion_tables
import shopify_redact as m
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.param import ParamValidationError
from airflow.sdk.exceptions import AirflowFailException
from shoplake_airflow import ingest, redact
from shoplake_airflow.table_definitions import (
    definitions_folder,
    lake_root,
    read_definitions,
    table_location,
)

TABLE_NAMES = tuple(d.name for d in read_definitions(definitions_folder()))
SHOP_ID = "7ba8211d-0d46-4f3f-a9a7-2d401a4363bf"
DOMAIN = "north-candles.myshopify.com"
SECRET = "s3cr3t-erasure-key-0123456789"
BINARY = "/opt/shoplake/bin/shoplake"
TARGET = redact.RedactTarget(
    "s3://lake", "/defs", ("shopify_configuration", "shopify_usage_daily")
)


def evidence(table_name, holding=(), table=None):
    return {"table_name": table_name, "table": table or f"s3://lake/{table_name}",
            "objects_checked": 3, "holding": [{"kind": "data", "path": p} for p in holding],
            "result": "present" if holding else "absent", "value_hash": "ab" * 32}  # fmt: skip


def all_absent(names=TABLE_NAMES):
    lines = []
    for name in names:
        lines += [evidence(name), evidence(name, table=f"s3://lake/{name}_rejects")]
    return "".join(json.dumps(e) + "\n" for e in lines)


class FakeProc:
    def __init__(self, code, stdout="", stderr=""):
        self.code, self.pid = code, 4242
        self.stdout, self.stderr = io.StringIO(stdout), io.StringIO(stderr)

    def wait(self, timeout=None):
        return self.code

    def poll(self):
        return self.code


class DagTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bag = DagBag(dag_folder=str(DAGS))
        cls.dag = cls.bag.get_dag(redact.DAG_ID)

    def test_loads_with_erase_then_verify(self):
        self.assertEqual(self.bag.import_errors, {})
        self.assertIsNotNone(self.dag)
        self.assertEqual(set(self.dag.task_ids), {"erase", "verify"})
        self.assertEqual(self.dag.get_task("verify").upstream_task_ids, {"erase"})
        self.assertEqual(
            type(self.dag.timetable).__name__, "NullTimetable"
        )  # schedule=None
        self.assertEqual(self.dag.max_active_runs, 1)
        for task_id in ("erase", "verify"):
            task = self.dag.get_task(task_id)
            self.assertIsInstance(task, redact.ShoplakeRedactOperator)
            self.assertEqual(task.shoplake_mode, task_id)
            self.assertGreaterEqual(task.retries, 1)  # exit 3/5
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            self.assertEqual([c.__name__ for c in callbacks], ["alert_on_failure"])
            target = task.shoplake_target
            self.assertEqual(target.lake, lake_root())
            self.assertEqual(target.tables_dir, str(definitions_folder()))
            self.assertEqual(target.table_names, TABLE_NAMES)
        (conf,) = [
            d
            for d in read_definitions(definitions_folder())
            if d.name == "shopify_configuration"
        ]
        self.assertEqual(
            self.dag.get_task("erase").shoplake_target.legacy_location,
            table_location(lake_root(), conf),
        )

    def resolve(self, name, value):
        return copy.deepcopy(self.dag.params.get_param(name)).resolve(value)

    def test_params(self):
        self.assertEqual(
            set(self.dag.params.keys()), {"shop_id", "shop_domain", "reason", "purge"}
        )
        with self.assertRaises(
            ParamValidationError
        ):  # shop_id has no default: required
            copy.deepcopy(self.dag.params).validate()
        for good in (SHOP_ID, "690933842", "gid://shopify/Shop/690933842"):
            self.assertEqual(self.resolve("shop_id", good), good)
        for bad in ("", " ", "a b", " 1", 690933842, None):
            with self.subTest(shop_id=bad), self.assertRaises(ParamValidationError):
                self.resolve("shop_id", bad)
        for good in (None, DOMAIN, "Shop-1.myshopify.com"):
            self.resolve("shop_domain", good)
        for bad in (
            "north-candles.com",
            "x.myshopify.com.evil",
            "",
            "-a.myshopify.com",
        ):
            with self.subTest(shop_domain=bad), self.assertRaises(ParamValidationError):
                self.resolve("shop_domain", bad)
        self.assertIs(self.resolve("purge", False), False)
        self.assertIs(
            copy.deepcopy(self.dag.params.get_param("purge")).resolve(), True
        )  # default
        with self.assertRaises(ParamValidationError):
            self.resolve("purge", "no")
        with self.assertRaises(ParamValidationError):
            self.resolve("reason", "x" * 501)


class ArgsTest(unittest.TestCase):
    def test_erase_and_verify_command_lines(self):
        self.assertEqual(
            redact.build_erase_args(TARGET, SHOP_ID, "shop/redact (dag run r1)", True),
            ["erase", "--tables", "/defs", "--lake", "s3://lake", "--all-tables", "--key", SHOP_ID,
             "--purge", "--reason", "shop/redact (dag run r1)", "--format", "json"],
        )  # fmt: skip
        no_purge = redact.build_erase_args(TARGET, SHOP_ID, "r", False, "/other")
        self.assertNotIn("--purge", no_purge)
        self.assertEqual(no_purge[1:3], ["--tables", "/other"])
        self.assertEqual(
            redact.build_verify_args(TARGET, SHOP_ID),
            ["erase", "--verify", "--tables", "/defs", "--lake", "s3://lake", "--all-tables",
             "--key", SHOP_ID, "--format", "json"],
        )  # fmt: skip

    def test_reason_never_holds_the_shop(self):
        self.assertEqual(
            redact.redact_reason("manual__2026-12-06", SHOP_ID, DOMAIN, None),
            "shop/redact (dag run manual__2026-12-06)",
        )
        self.assertEqual(
            redact.redact_reason(
                f"redact_{SHOP_ID}", SHOP_ID, DOMAIN, f" webhook 42 for {DOMAIN} "
            ),
            "shop/redact (dag run redact_<shop_id>): webhook 42 for <shop_domain>",
        )

    def test_logged_command_line_hides_the_shop_id(self):
        argv = [BINARY, *redact.build_verify_args(TARGET, SHOP_ID)]
        shown = redact.shown_argv(argv, SHOP_ID)
        self.assertNotIn(SHOP_ID, shown)
        self.assertIn("--key '<shop_id>'", shown)

    def test_evidence(self):
        good = [evidence("shopify_configuration"), evidence("shopify_usage_daily")]
        self.assertEqual(redact.evidence_problems(good, TARGET.table_names), [])
        self.assertEqual(len(redact.evidence_problems(good[:1], TARGET.table_names)), 1)
        bad = [*good, evidence("shopify_usage_daily", ["d=1/part-0.parquet"])]
        self.assertEqual(
            redact.holding_objects(bad),
            [("s3://lake/shopify_usage_daily", "data", "d=1/part-0.parquet")],
        )
        self.assertEqual(len(redact.evidence_problems(bad, TARGET.table_names)), 1)
        self.assertEqual(
            len(redact.parse_json_lines("noise\n" + all_absent() + "[1]\n")), 4
        )


class RunTest(unittest.TestCase):
    """The tasks with a faked binary: arguments, environment, exit codes, evidence."""

    def setUp(self):
        self.erase = m.shopify_redact.get_task("erase")
        self.verify = m.shopify_redact.get_task("verify")
        self.lake = self.erase.shoplake_target.lake
        self.variables = {
            ingest.CONFIG_VARIABLE: {"binary": BINARY, "source": "/raw", "aws_region": "eu-west-1",
                                     "table": self.erase.shoplake_target.legacy_location},
            ingest.ERASURE_KEY_VARIABLE: SECRET,
        }  # fmt: skip
        self.ti = mock.Mock()
        self.params = {
            "shop_id": SHOP_ID,
            "shop_domain": DOMAIN,
            "reason": None,
            "purge": True,
        }

    def run_task(self, task, code, stdout="", params=None):
        calls = []

        def popen(argv, **kwargs):
            calls.append((argv, kwargs["env"]))
            return FakeProc(code, stdout, "INFO something\n")

        def get(key, default=None, deserialize_json=False):
            return copy.deepcopy(self.variables.get(key, default))

        ctx = {"params": {**self.params, **(params or {})}, "run_id": "manual__2026-12-06",
               "dag_run": mock.Mock(run_id="manual__2026-12-06"), "ti": self.ti}  # fmt: skip
        with (
            mock.patch.object(ingest.Variable, "get", side_effect=get),
            mock.patch.object(ingest.subprocess, "Popen", side_effect=popen),
            mock.patch.dict(
                os.environ, {"SHOPLAKE_TABLE": "/elsewhere", "SHOPLAKE_LAKE": "/x"}
            ),
        ):
            os.environ.pop(ingest.ERASURE_KEY_ENV, None)
            self.calls = calls
            return task.execute(ctx)

    def test_erase_runs_every_table_with_the_key_from_the_variable(self):
        report = {
            "table_name": "shopify_configuration",
            "rows_erased": 1,
            "erasure_id": "e1",
        }
        result = self.run_task(self.erase, 0, json.dumps(report) + "\n")
        self.assertEqual(result, [report])
        ((argv, env),) = self.calls
        self.assertEqual(
            argv,
            [BINARY, "erase", "--tables", str(definitions_folder()), "--lake", self.lake,
             "--all-tables", "--key", SHOP_ID, "--purge",
             "--reason", "shop/redact (dag run manual__2026-12-06)", "--format", "json"],
        )  # fmt: skip
        self.assertEqual(env[ingest.ERASURE_KEY_ENV], SECRET)
        self.assertEqual(env["AWS_REGION"], "eu-west-1")
        for name in (
            "SHOPLAKE_TABLE",
            "SHOPLAKE_LAKE",
        ):  # the DAG names the tables itself
            self.assertNotIn(name, env)

    def test_purge_param_false_leaves_purge_out(self):
        self.run_task(self.erase, 0, params={"purge": False})
        self.assertNotIn("--purge", self.calls[0][0])

    def test_no_key_no_erase(self):
        del self.variables[ingest.ERASURE_KEY_VARIABLE]
        with self.assertRaisesRegex(AirflowFailException, "shoplake_erasure_secret"):
            self.run_task(self.erase, 0)
        self.assertEqual(self.calls, [])

    def test_refusals_before_running(self):
        cfg = self.variables[ingest.CONFIG_VARIABLE]
        for variables in (
            {**cfg, "runner": "kubernetes"},
            {**cfg, "table": "s3://elsewhere/shopify_configuration"},
        ):
            self.variables[ingest.CONFIG_VARIABLE] = variables
            with self.subTest(cfg=variables), self.assertRaises(AirflowFailException):
                self.run_task(self.erase, 0)
            self.assertEqual(self.calls, [])
        self.variables[ingest.CONFIG_VARIABLE] = {
            **cfg, "runner": "kubernetes", "table_overrides": {"shopify_redact": {"runner": "subprocess"}}
        }  # fmt: skip
        self.run_task(self.erase, 0)  # this DAG's own override
        self.variables[ingest.CONFIG_VARIABLE] = cfg
        with self.assertRaises(AirflowFailException):
            self.run_task(self.erase, 0, params={"shop_id": ""})

    def test_exit_code_mapping(self):
        for task in (self.erase, self.verify):
            for code in (3, 5, 6):
                with self.subTest(task=task.task_id, code=code), \
                        self.assertRaises(ingest.ShoplakeRunError) as cm:  # fmt: skip
                    self.run_task(task, code)
                self.assertNotIsInstance(cm.exception, AirflowFailException)  # retried
                self.assertEqual(cm.exception.exit_code, code)
            for code in (1, 2, 4, 137):
                with self.subTest(task=task.task_id, code=code), \
                        self.assertRaises(AirflowFailException) as cm:  # fmt: skip
                    self.run_task(task, code)
                self.assertEqual(cm.exception.exit_code, code)
                self.assertIn("shoplake erase", str(cm.exception))

    def test_verify_absent_everywhere(self):
        summary = self.run_task(self.verify, 0, all_absent())
        ((argv, env),) = self.calls
        self.assertEqual(argv[1:3], ["erase", "--verify"])
        self.assertNotIn("--reason", argv)
        self.assertEqual(
            env[ingest.ERASURE_KEY_ENV], SECRET
        )  # the value's keyed hash as evidence
        self.assertEqual(summary["result"], "absent")
        self.assertEqual(summary["tables"], sorted(TABLE_NAMES))
        self.ti.xcom_push.assert_called_once()
        self.assertEqual(self.ti.xcom_push.call_args.kwargs["key"], "evidence")
        self.assertEqual(
            len(self.ti.xcom_push.call_args.kwargs["value"]), 2 * len(TABLE_NAMES)
        )

    def test_verify_exit_4_fails_names_the_objects_and_keeps_the_evidence(self):
        stdout = (
            all_absent()
            + json.dumps(evidence("shopify_usage_daily", ["d=1/p.parquet"]))
            + "\n"
        )
        task_log = mock.Mock()
        with mock.patch.object(redact.ShoplakeRedactOperator, "log", new_callable=mock.PropertyMock,
                               return_value=task_log), \
                self.assertRaises(AirflowFailException) as cm:  # fmt: skip
            self.run_task(self.verify, 4, stdout)
        self.assertEqual(cm.exception.exit_code, 4)
        errors = [c.args[0] % c.args[1:] for c in task_log.error.call_args_list]
        expected = "SHOPLAKE STILL HOLDS THE VALUE table=s3://lake/shopify_usage_daily kind=data"
        self.assertEqual(errors, [f"{expected} path=d=1/p.parquet"])
        pushed = self.ti.xcom_push.call_args.kwargs
        self.assertEqual(
            (pushed["key"], pushed["value"][-1]["result"]), ("evidence", "present")
        )

    def test_verify_exit_0_without_proof_fails(self):
        for stdout in ("", all_absent(TABLE_NAMES[:1]),
                       all_absent() + json.dumps(evidence(TABLE_NAMES[0], ["p"])) + "\n"):  # fmt: skip
            with self.subTest(stdout=stdout), self.assertRaises(AirflowFailException):
                self.run_task(self.verify, 0, stdout)


class ErasureKeyTest(unittest.TestCase):
    """The loads take the key from the same places (once a table has erasures, loads need it)."""

    def test_key_from_the_variable_is_masked(self):
        with (
            mock.patch.object(ingest.Variable, "get", return_value=SECRET) as get,
            mock.patch.object(ingest, "mask_secret") as mask,
        ):
            self.assertEqual(ingest.erasure_key_env(), {"SHOPLAKE_ERASURE_KEY": SECRET})
        self.assertEqual(get.call_args.args[0], "shoplake_erasure_secret")
        mask.assert_called_once_with(SECRET)
        with mock.patch.object(ingest.Variable, "get", return_value=None):
            self.assertEqual(ingest.erasure_key_env(), {})

    def test_ingestion_runners_pass_the_key(self):
        dag = vars(ingestion_tables)["ingestion_shopify_usage_daily"]
        sub, pod = dag.get_task("ingest_subprocess"), dag.get_task("ingest_kubernetes")
        cfg = {
            **ingest.DEFAULTS,
            "binary": BINARY,
            "source": "/raw",
            "image": "shoplake:1",
        }
        ctx = {"logical_date": datetime(2019, 4, 2, 3, tzinfo=UTC), "params": {"date": None},
               "dag_run": mock.Mock(run_after=None), "outlet_events": mock.MagicMock()}  # fmt: skip
        envs = []
        with (
            mock.patch.object(ingest, "load_config", return_value=cfg),
            mock.patch.object(ingest.Variable, "get", return_value=SECRET),
            mock.patch.object(ingest.subprocess, "Popen",
                              side_effect=lambda argv, **kw: envs.append(kw["env"]) or FakeProc(0)),
        ):  # fmt: skip
            sub.execute(ctx)
        self.assertEqual(envs[0]["SHOPLAKE_ERASURE_KEY"], SECRET)
        pod.prepare(
            ctx,
            {**cfg, "erasure_key_secret": {"name": "shoplake", "key": "erasure-key"}},
        )
        (var,) = [e for e in pod.env_vars if e.name == "SHOPLAKE_ERASURE_KEY"]
        self.assertIsNone(
            var.value
        )  # never the value: a reference to the Kubernetes Secret
        self.assertEqual(var.value_from.secret_key_ref.name, "shoplake")

    def test_no_key_in_the_variables_file(self):
        variables = json.loads((DAGS.parent / "variables.json").read_text())
        self.assertNotIn("shoplake_erasure_secret", variables)
        self.assertIsNone(variables["shoplake_ingestion"]["erasure_key_secret"])


if __name__ == "__main__":
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    unittest.main()
