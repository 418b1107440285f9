"""Unit tests of the parse-time reading of table definitions (dags/shoplake_airflow/
table_definitions.py), of the example downstream DAGs and of the lineage helpers.

Run by deploy/airflow/test.sh (python -m unittest discover -s deploy/airflow/tests). One test
compares this reader with the binary's own listing, `shoplake tables --format json`, so the DAGs
and shoplake cannot disagree on which tables exist and where they live: it needs the binary in
SHOPLAKE_TEST_BINARY (test.sh sets it) and fails without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

DAGS = Path(__file__).resolve().parent.parent / "dags"
sys.path.insert(0, str(DAGS))

import example_downstream
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Asset
from shoplake_airflow import lineage
from shoplake_airflow.table_definitions import (
    CHECKOUT_TABLES,
    DefinitionsError,
    asset_uri,
    definitions_folder,
    lake_root,
    read_definitions,
    table_asset,
    table_location,
)


class ReaderTest(unittest.TestCase):
    def test_default_folder_is_the_checkouts_tables(self):
        self.assertEqual(definitions_folder({}), CHECKOUT_TABLES.resolve())
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(
                definitions_folder({"SHOPLAKE_TABLES": tmp}), Path(tmp).resolve()
            )
        with self.assertRaises(DefinitionsError):
            definitions_folder({"SHOPLAKE_TABLES": "/nonexistent/tables"})

    def test_matches_shoplake_tables_json(self):
        binary = os.environ.get("SHOPLAKE_TEST_BINARY")
        self.assertTrue(
            binary,
            "SHOPLAKE_TEST_BINARY must name the shoplake binary (test.sh sets it)",
        )
        # Every definition of the checkout (test.sh points SHOPLAKE_TABLES at the app's two).
        folder = definitions_folder({})
        for lake in ("/data/lake", "s3://acme-lake/prod"):
            with self.subTest(lake=lake):
                listed = json.loads(
                    subprocess.run(
                        [binary, "tables", "--format", "json", "--tables", str(folder),
                         "--lake", lake, "--source", "/src"],
                        check=True, capture_output=True, text=True, timeout=60,
                    ).stdout
                )["tables"]  # fmt: skip
                ours = read_definitions(folder)
                self.assertEqual([t["name"] for t in listed], [d.name for d in ours])
                for table, definition in zip(listed, ours, strict=True):
                    self.assertTrue(table["valid"], table)
                    self.assertEqual(table["table"], table_location(lake, definition))
                    self.assertEqual(
                        table["source_pattern"], f"/src/{definition.source_pattern}"
                    )
                    self.assertEqual(table["partition_by"], definition.partition_by)
                    self.assertEqual(tuple(table["key"]), definition.key)

    def test_unreadable_or_misnamed_definition_still_gets_its_dag(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for name, text in {
                "good": 'name = "good"\npartition_by = "d"\ntable_path = "sub/good_t"\n',
                "broken": 'name = "broken\n',
                "misnamed": 'name = "other"\n',
            }.items():
                (root / name).mkdir()
                (root / name / "table.toml").write_text(text)
            (root / "not a table").mkdir()
            (root / "not a table" / "table.toml").write_text('name = "x"\n')
            (root / "README.md").write_text("no folder")
            found = {d.name: d for d in read_definitions(root)}
        self.assertEqual(sorted(found), ["broken", "good", "misnamed"])
        self.assertIsNone(found["good"].problem)
        self.assertEqual(table_location("/lake", found["good"]), "/lake/sub/good_t")
        self.assertIn("broken", found["broken"].problem)
        self.assertIn("not the folder's name", found["misnamed"].problem)
        with (
            tempfile.TemporaryDirectory() as empty,
            self.assertRaises(DefinitionsError),
        ):
            read_definitions(Path(empty))

    def test_lake_and_asset_uris(self):
        self.assertEqual(
            lake_root({"SHOPLAKE_LAKE": "s3://acme-lake/prod/"}), "s3://acme-lake/prod"
        )
        self.assertEqual(
            lake_root({"SHOPLAKE_LAKE": "file:///data/lake"}), "/data/lake"
        )
        for bad in (
            {},
            {"SHOPLAKE_LAKE": ""},
            {"SHOPLAKE_LAKE": "lake"},
            {"SHOPLAKE_TABLE": "s3://acme-lake/other_table"},
        ):
            with self.subTest(env=bad), self.assertRaises(DefinitionsError):
                lake_root(bad)
        # A deployment from before run-time definitions: only SHOPLAKE_TABLE.
        self.assertEqual(
            lake_root({"SHOPLAKE_TABLE": "s3://acme-lake/prod/shopify_configuration/"}),
            "s3://acme-lake/prod",
        )
        self.assertEqual(asset_uri("/data/lake/t"), "file:///data/lake/t")
        self.assertEqual(asset_uri("s3://acme-lake/prod/t"), "s3://acme-lake/prod/t")
        (definition,) = [
            d
            for d in read_definitions(definitions_folder())
            if d.name == "shopify_usage_daily"
        ]
        self.assertEqual(
            table_asset(definition, "s3://acme-lake"),
            Asset(name="shopify_usage_daily", uri="s3://acme-lake/shopify_usage_daily"),
        )


class DownstreamDagTest(unittest.TestCase):
    def test_one_downstream_per_table_scheduled_on_its_asset(self):
        bag = DagBag(dag_folder=str(DAGS))
        self.assertEqual(bag.import_errors, {})
        for definition in read_definitions(definitions_folder()):
            with self.subTest(table=definition.name):
                dag = bag.get_dag(f"example_downstream_{definition.name}")
                ingestion = bag.get_dag(f"ingestion_{definition.name}")
                (asset,) = ingestion.get_task("ingest_subprocess").outlets
                self.assertEqual(
                    type(dag.timetable).__name__, "AssetTriggeredTimetable"
                )
                self.assertEqual(list(dag.timetable.asset_condition.objects), [asset])
                self.assertEqual(dag.get_task("read_loaded_version").inlets, [asset])

    def test_latest_load_event_ignores_dry_runs(self):
        def event(minute, **extra):
            return SimpleNamespace(
                timestamp=datetime(2019, 4, 2, 3, minute, tzinfo=UTC), extra=extra
            )

        events = [event(2, table_version=5, status="committed"), event(1, table_version=4),
                  event(3, table_version=5, status="dry_run")]  # fmt: skip
        self.assertEqual(
            example_downstream.latest_load_event(events)["table_version"], 5
        )
        self.assertIsNone(
            example_downstream.latest_load_event([event(1, status="dry_run")])
        )


class LineageTest(unittest.TestCase):
    def test_split_parent_id_from_the_right(self):
        self.assertEqual(
            lineage.split_parent_id("airflow://prod/x/dag_a.load/0191-uuid"),
            {
                "namespace": "airflow://prod/x",
                "name": "dag_a.load",
                "run_id": "0191-uuid",
            },
        )
        for bad in ("a/b", "/job/run", "ns//run"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                lineage.split_parent_id(bad)

    def test_namespace_is_shoplakes_own_unless_configured(self):
        env = lineage.lineage_env({}, {})
        self.assertEqual(env["OPENLINEAGE_NAMESPACE"], "shoplake")
        self.assertNotIn("OPENLINEAGE_PARENT_ID", env)  # no task instance, no parent
        self.assertEqual(
            lineage.lineage_env({}, {"lineage_namespace": "lake"})[
                "OPENLINEAGE_NAMESPACE"
            ],
            "lake",
        )


if __name__ == "__main__":
    unittest.main()
