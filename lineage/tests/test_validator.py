"""Unit tests of lineage/olvalidate.py: each validation layer accepts good run
events (hand-written and built by openlineage-python 1.54.0 itself) and refuses
each kind of broken one, so the lineage tier cannot pass vacuously. Runs no
shoplake.

The `classes` layer needs only the venv (lineage/setup.sh): its tests always
run. The `json-schema` layer needs the pinned schema files: without them its
tests are skipped with the reason in pytest's summary (test.sh passes -rs), and
LINEAGE_SPEC_MODE=require turns that into a failure. With them, the tests
below also check that the class layer's tables (FORMATS, EXTRA_REQUIRED, ...)
and openlineage-python's classes say what the JSON schemas say."""

from __future__ import annotations

import copy
import json
import shutil
import sys
import types
import typing
import uuid
from enum import Enum
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import olvalidate

PRODUCER = "https://github.com/shoplake/shoplake/tree/v0.1.0"
EXPORT = "/data/raw/2019-04-01.csv"
TABLE = "/data/lake/shopify_configuration"
LAYERS = ["classes", "json-schema"]


@pytest.fixture(scope="module")
def validator():
    return olvalidate.Validator()


class Layers(dict):
    why_not: dict[str, str]


@pytest.fixture(scope="module")
def layers(validator):
    found = Layers((layer.name, layer) for layer in validator.layers)
    found.why_not = {"json-schema": (validator.json_problem or "").splitlines()[0] if validator.json_problem else ""}
    return found


def layer_of(layers, name):
    if name not in layers:
        pytest.skip(f"{name} layer not run ({layers.why_not.get(name)}); the classes layer is tested on its own")
    return layers[name]


@pytest.fixture(scope="module")
def json_layer(layers):
    return layer_of(layers, "json-schema")


def facet(key: str, **fields) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": olvalidate.RECOMMENDED[key], **fields}


def report_facet(**overrides) -> dict:
    fields = {
        "table_name": "shopify_configuration", "date": "2019-04-01", "source": EXPORT, "table": TABLE,
        "status": "committed", "table_version": 1, "rows_read": 201, "rows_filtered": 5, "rows_rejected": 1,
        "rows_duplicate": 0, "rows_valid": 195, "rows_inserted": 195, "rows_updated": 0, "rows_deleted": 0,
        "rows_unchanged": 0, "files_added": 1, "files_removed": 0, "duration_ms": 90,
        "run_id": "19ef3ab1-e295-46d4-a464-dd0fdaf9b943", "exit_code": 0,
        "ignored_columns": [], "missing_columns": [], "added_columns": [],
    }
    fields.update(overrides)
    return {"_producer": PRODUCER, "_schemaURL": olvalidate.own_facet_url(), **fields}


def good_event() -> dict:
    """A COMPLETE event of a load with every facet of shoplake's contract, each where the spec puts it."""
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-02T06:22:18.234Z",
        "producer": PRODUCER,
        "schemaURL": olvalidate.RUN_EVENT,
        "run": {
            "runId": "0191f7a2-8d5e-7c3b-9a41-2f6e8d1c0b7a",
            "facets": {
                "nominalTime": facet("nominalTime", nominalStartTime="2019-04-01T00:00:00Z", nominalEndTime="2019-04-02T00:00:00Z"),
                "parent": facet(
                    "parent",
                    run={"runId": str(uuid.uuid4())},
                    job={"namespace": "airflow://prod", "name": "shoplake_shopify_configuration.ingest"},
                    root={"run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "airflow://prod", "name": "shoplake_shopify_configuration"}},
                ),
                "shoplake_runReport": report_facet(),
            },
        },
        "job": {
            "namespace": "shoplake",
            "name": "shopify_configuration",
            "facets": {"jobType": facet("jobType", processingType="BATCH", integration="SHOPLAKE", jobType="JOB")},
        },
        "inputs": [
            {
                "namespace": "file",
                "name": EXPORT,
                "facets": {"schema": facet("schema", fields=[{"name": "id"}, {"name": "index_prefix"}])},
                "inputFacets": {
                    "dataQualityAssertions": facet(
                        "dataQualityAssertions",
                        assertions=[{"assertion": "null_ratio", "success": True, "column": "shop_domain", "name": "shop_domain_present", "severity": "warn"}],
                    ),
                },
            }
        ],
        "outputs": [
            {
                "namespace": "file",
                "name": TABLE,
                "facets": {
                    "schema": facet("schema", fields=[{"name": "id", "type": "string"}, {"name": "has_specific_prefix", "type": "boolean"}]),
                    "version": facet("version", datasetVersion="1"),
                    "columnLineage": facet(
                        "columnLineage",
                        fields={
                            "id": {"inputFields": [{"namespace": "file", "name": EXPORT, "field": "id",
                                                    "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]}]},
                            "has_specific_prefix": {"inputFields": [{"namespace": "file", "name": EXPORT, "field": "index_prefix",
                                                                     "transformations": [{"type": "DIRECT", "subtype": "TRANSFORMATION"}]}]},
                        },
                    ),
                },
                "outputFacets": {"outputStatistics": facet("outputStatistics", rowCount=195, size=41062, fileCount=1)},
            }
        ],
    }


def fail_event() -> dict:
    event = good_event()
    event["eventType"] = "FAIL"
    event["run"]["facets"]["errorMessage"] = facet("errorMessage", message="no export for 2019-04-05", programmingLanguage="RUST")
    event["run"]["facets"]["shoplake_runReport"] = report_facet(status="failed", table_version=None, exit_code=3)
    return event


def backfill_event() -> dict:
    event = good_event()
    event["job"]["name"] = "shopify_configuration.backfill"
    event["inputs"] = []
    event["run"]["facets"]["shoplake_runReport"] = {
        "_producer": PRODUCER, "_schemaURL": olvalidate.own_facet_url(), "dates": 3, "rows_read": 603,
        "rows_valid": 585, "rows_rejected": 3, "rows_inserted": 585, "rows_updated": 0, "rows_deleted": 0, "exit_code": 0,
    }
    return event


def openlineage_python_event() -> dict:
    """An event built and serialized by the official client itself."""
    from openlineage.client import event_v2, facet_v2
    from openlineage.client.serde import Serde

    cl, dq, dv = facet_v2.column_lineage_dataset, facet_v2.data_quality_assertions_dataset, facet_v2.dataset_version_dataset
    em, jt, nt = facet_v2.error_message_run, facet_v2.job_type_job, facet_v2.nominal_time_run
    os_, pr, sd = facet_v2.output_statistics_output_dataset, facet_v2.parent_run, facet_v2.schema_dataset

    run_facets = {
        "nominalTime": nt.NominalTimeRunFacet(nominalStartTime="2019-04-01T00:00:00Z", producer=PRODUCER),
        "parent": pr.ParentRunFacet(run=pr.Run(runId=str(uuid.uuid4())), job=pr.Job(namespace="airflow", name="d.t"),
                                    root=pr.Root(run=pr.RootRun(runId=str(uuid.uuid4())), job=pr.RootJob(namespace="airflow", name="d")),
                                    producer=PRODUCER),
        "errorMessage": em.ErrorMessageRunFacet(message="boom", programmingLanguage="RUST", producer=PRODUCER),
    }
    source = event_v2.InputDataset(
        namespace="file", name=EXPORT,
        facets={"schema": sd.SchemaDatasetFacet(fields=[sd.SchemaDatasetFacetFields(name="id")], producer=PRODUCER)},
        inputFacets={"dataQualityAssertions": dq.DataQualityAssertionsDatasetFacet(
            assertions=[dq.Assertion(assertion="sql", success=True, name="counts_not_negative")], producer=PRODUCER)},
    )
    output = event_v2.OutputDataset(
        namespace="file", name=TABLE,
        facets={
            "schema": sd.SchemaDatasetFacet(fields=[sd.SchemaDatasetFacetFields(name="id", type="string")], producer=PRODUCER),
            "version": dv.DatasetVersionDatasetFacet(datasetVersion="1", producer=PRODUCER),
            "columnLineage": cl.ColumnLineageDatasetFacet(fields={"id": cl.Fields(inputFields=[
                cl.InputField(namespace="file", name=EXPORT, field="id")])}, producer=PRODUCER),
        },
        outputFacets={"outputStatistics": os_.OutputStatisticsOutputDatasetFacet(rowCount=1, size=2, fileCount=1, producer=PRODUCER)},
    )
    event = event_v2.RunEvent(
        eventType=event_v2.RunState.FAIL, eventTime="2026-12-02T06:00:00.000Z", producer=PRODUCER,
        run=event_v2.Run(runId=str(uuid.uuid4()), facets=run_facets),
        job=event_v2.Job(namespace="shoplake", name="t", facets={"jobType": jt.JobTypeJobFacet(
            processingType="BATCH", integration="SHOPLAKE", jobType="JOB", producer=PRODUCER)}),
        inputs=[source], outputs=[output],
    )
    return json.loads(Serde.to_json(event))


GOOD = {"load": good_event, "fail": fail_event, "backfill": backfill_event, "openlineage-python": openlineage_python_event}


@pytest.mark.parametrize("make", sorted(GOOD))
@pytest.mark.parametrize("name", LAYERS)
def test_good_events_pass(layers, name, make):
    assert layer_of(layers, name).check_event(GOOD[make]()) == []


def test_good_events_pass_the_validator(validator):
    for make in GOOD.values():
        assert validator.check_event(make()) == ([], [])


def test_recommended_schema_urls_are_openlineage_python_1_54s():
    from openlineage.client import facet_v2 as f
    from openlineage.client.event_v2 import RunEvent

    classes = {
        "nominalTime": f.nominal_time_run.NominalTimeRunFacet, "parent": f.parent_run.ParentRunFacet,
        "errorMessage": f.error_message_run.ErrorMessageRunFacet, "jobType": f.job_type_job.JobTypeJobFacet,
        "schema": f.schema_dataset.SchemaDatasetFacet, "version": f.dataset_version_dataset.DatasetVersionDatasetFacet,
        "columnLineage": f.column_lineage_dataset.ColumnLineageDatasetFacet,
        "dataQualityAssertions": f.data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet,
        "outputStatistics": f.output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet,
    }
    assert {key: cls._get_schema() for key, cls in classes.items()} == olvalidate.RECOMMENDED
    assert RunEvent._get_schema() == olvalidate.RUN_EVENT
    keys = olvalidate.lock_keys()
    for key, url in olvalidate.RECOMMENDED.items():
        assert keys[url.partition("#")[0]] == key, f"spec.lock.json: {url} does not declare {key}"


def test_every_locked_facet_document_has_a_class(layers):
    """The class layer knows a class for every facet document spec.lock.json pins."""
    by_document = {url.partition("#")[0] for url in layers["classes"].classes}
    locked = {e["url"] for e in olvalidate.lock_entries()} - {olvalidate.CORE}
    assert locked == by_document


def mutate(path: str, value=None, delete: bool = False):
    """A function that changes one field of good_event() (dotted path; [n] for list items)."""

    def apply(event: dict) -> dict:
        parts = [int(p[1:-1]) if p.startswith("[") else p for p in path.replace("[", ".[").split(".") if p]
        node = event
        for part in parts[:-1]:
            node = node[part]
        if delete:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
        return event

    return apply


def move(source: str, target: str):
    """Moves a facet from one facets object to another (dotted paths of the objects; the key stays)."""

    def apply(event: dict) -> dict:
        def node(path):
            out = event
            for part in [int(p[1:-1]) if p.startswith("[") else p for p in path.replace("[", ".[").split(".") if p]:
                out = out[part]
            return out

        *src, key = source.split(".")
        node(target).__setitem__(key, node(".".join(src)).pop(key))
        return event

    return apply


def rename(path: str, new: str):
    def apply(event: dict) -> dict:
        *parent, old = path.split(".")
        node = event
        for part in [int(p[1:-1]) if p.startswith("[") else p for p in ".".join(parent).replace("[", ".[").split(".") if p]:
            node = node[part]
        node[new] = node.pop(old)
        return event

    return apply


def add(path: str, key: str, value):
    def apply(event: dict) -> dict:
        node = event
        for part in [int(p[1:-1]) if p.startswith("[") else p for p in path.replace("[", ".[").split(".") if p]:
            node = node[part]
        node[key] = value
        return event

    return apply


OTHER_SCHEMA = "https://example.com/ShoplakeRunReportRunFacet.json#/$defs/ShoplakeRunReportRunFacet"
# case -> (change, what each layer says): one string for both, or {layer: string}; None: that layer
# accepts it (the JSON schemas let facets carry extra fields, the classes do not).
BROKEN = {
    "no runId": (mutate("run.runId", delete=True), "'runId' is a required property"),
    "runId not a UUID": (mutate("run.runId", "run-1"), "is not a 'uuid'"),
    "runId without hyphens": (mutate("run.runId", "0191f7a28d5e7c3b9a412f6e8d1c0b7a"), "is not a 'uuid'"),
    "unknown eventType": (mutate("eventType", "DONE"), "is not one of"),
    "eventType in lower case": (mutate("eventType", "complete"), "is not one of"),
    "eventTime not RFC 3339": (mutate("eventTime", "2026-12-02 06:22"), "is not a 'date-time'"),
    "eventTime without offset": (mutate("eventTime", "2026-12-02T06:22:18"), "is not a 'date-time'"),
    "eventTime a number": (mutate("eventTime", 1764656538), "is not of type 'string'"),
    "no producer": (mutate("producer", delete=True), "'producer' is a required property"),
    "producer not a URI": (mutate("producer", "shoplake 0.1.0"), "is not a 'uri'"),
    "event schemaURL of another version": (mutate("schemaURL", olvalidate.SPEC_PREFIX + "1-0-5/OpenLineage.json#/$defs/RunEvent"), "is not https://openlineage.io/spec/2-0-2"),
    "no run": (mutate("run", delete=True), "'run' is a required property"),
    "job without name": (mutate("job.name", delete=True), "'name' is a required property"),
    "job namespace a number": (mutate("job.namespace", 7), "is not of type 'string'"),
    "inputs not a list": (mutate("inputs", {"namespace": "file"}), "is not of type 'array'"),
    "input without namespace": (mutate("inputs[0].namespace", delete=True), "'namespace' is a required property"),
    "facet without _schemaURL": (mutate("run.facets.nominalTime._schemaURL", delete=True), "no _schemaURL"),
    "facet without _producer": (mutate("run.facets.nominalTime._producer", delete=True), "'_producer' is a required property"),
    "facet _producer not a URI": (mutate("run.facets.nominalTime._producer", "shoplake"), "is not a 'uri'"),
    "facet schema not installed": (mutate("outputs[0].facets.schema._schemaURL", olvalidate.FACETS + "9-9-9/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"), "no such schema installed"),
    "facet schema of the core": (mutate("outputs[0].facets.schema._schemaURL", olvalidate.CORE + "#/$defs/DatasetFacet"), "no such schema installed"),
    "facet _schemaURL without a definition": (mutate("outputs[0].facets.schema._schemaURL", olvalidate.FACETS + "1-2-0/SchemaDatasetFacet.json"), "names no definition"),
    "facet under another key": (rename("outputs[0].facets.schema", "schemas"), "declares ['schema']"),
    "input facet among dataset facets": (move("inputs[0].inputFacets.dataQualityAssertions", "inputs[0].facets"), "as a InputDatasetFacet; here it is a DatasetFacet"),
    "input facet among output facets": (move("inputs[0].inputFacets.dataQualityAssertions", "outputs[0].outputFacets"), "here it is a OutputDatasetFacet"),
    "dataset facet among input facets": (move("inputs[0].facets.schema", "inputs[0].inputFacets"), "as a DatasetFacet; here it is a InputDatasetFacet"),
    "run facet among job facets": (move("run.facets.nominalTime", "job.facets"), "here it is a JobFacet"),
    "facet with an unknown field": (add("outputs[0].facets.version", "datasetVersions", "1"), {"classes": "unknown field 'datasetVersions'", "json-schema": None}),
    "facet field null": (mutate("inputs[0].inputFacets.dataQualityAssertions.assertions[0].column", None), {"classes": "None is not allowed", "json-schema": "None is not of type 'string'"}),
    "facet _deleted not a boolean": (mutate("outputs[0].facets.version._deleted", "yes"), "is not of type 'boolean'"),
    "nominalTime without start": (mutate("run.facets.nominalTime.nominalStartTime", delete=True), "'nominalStartTime' is a required property"),
    "nominalTime not a date-time": (mutate("run.facets.nominalTime.nominalStartTime", "2019-04-01"), "is not a 'date-time'"),
    "parent runId not a UUID": (mutate("run.facets.parent.run.runId", "42"), "is not a 'uuid'"),
    "parent without job": (mutate("run.facets.parent.job", delete=True), "'job' is a required property"),
    "parent root run without runId": (mutate("run.facets.parent.root.run.runId", delete=True), "'runId' is a required property"),
    "parent job with an unknown field": (add("run.facets.parent.job", "runId", str(uuid.uuid4())), {"classes": "unknown field 'runId'", "json-schema": None}),
    "schema fields not a list": (mutate("inputs[0].facets.schema.fields", {"id": "string"}), "is not of type 'array'"),
    "schema field without name": (mutate("outputs[0].facets.schema.fields[0].name", delete=True), "'name' is a required property"),
    "schema field type not a string": (mutate("outputs[0].facets.schema.fields[1].type", True), "is not of type 'string'"),
    "version without datasetVersion": (mutate("outputs[0].facets.version.datasetVersion", delete=True), "'datasetVersion' is a required property"),
    "version a number": (mutate("outputs[0].facets.version.datasetVersion", 1), "is not of type 'string'"),
    "column lineage input without field": (mutate("outputs[0].facets.columnLineage.fields.id.inputFields[0].field", delete=True), "'field' is a required property"),
    "column lineage transformation type not a string": (mutate("outputs[0].facets.columnLineage.fields.id.inputFields[0].transformations[0].type", 1), "is not of type 'string'"),
    "assertion success not a boolean": (mutate("inputs[0].inputFacets.dataQualityAssertions.assertions[0].success", "yes"), "is not of type 'boolean'"),
    "assertions missing": (mutate("inputs[0].inputFacets.dataQualityAssertions.assertions", delete=True), "'assertions' is a required property"),
    "rowCount a string": (mutate("outputs[0].outputFacets.outputStatistics.rowCount", "195"), "is not of type 'integer'"),
    "rowCount a float": (mutate("outputs[0].outputFacets.outputStatistics.rowCount", 195.5), "is not of type 'integer'"),
    "jobType without processingType": (mutate("job.facets.jobType.processingType", delete=True), "'processingType' is a required property"),
    "report: misspelt field": (add("run.facets.shoplake_runReport", "rows_reed", 1), "rows_reed"),
    "report: no exit_code": (mutate("run.facets.shoplake_runReport.exit_code", delete=True), "exit_code"),
    "report: negative count": (mutate("run.facets.shoplake_runReport.rows_read", -1), "rows_read"),
    "report: unknown status": (mutate("run.facets.shoplake_runReport.status", "done"), "status"),
    "report: run_id not a UUID": (mutate("run.facets.shoplake_runReport.run_id", "x"), "run_id"),
    "report: no _producer": (mutate("run.facets.shoplake_runReport._producer", delete=True), "'_producer' is a required property"),
    "report: other schema URL": (mutate("run.facets.shoplake_runReport._schemaURL", OTHER_SCHEMA), "no such schema installed"),
    "report: under another key": (rename("run.facets.shoplake_runReport", "shoplake_report"), "declares ['shoplake_runReport']"),
    "report: among job facets": (move("run.facets.shoplake_runReport", "job.facets"), "here it is a JobFacet"),
}


def expected_of(case: str, layer: str) -> str | None:
    expected = BROKEN[case][1]
    return expected.get(layer) if isinstance(expected, dict) else expected


@pytest.mark.parametrize("case", sorted(BROKEN))
@pytest.mark.parametrize("name", LAYERS)
def test_broken_events_fail(layers, name, case):
    layer = layer_of(layers, name)
    errors = layer.check_event(BROKEN[case][0](good_event()))
    expected = expected_of(case, name)
    if expected is None:
        assert errors == [], f"{case}: the {name} layer is expected to accept it (the schemas allow it)"
        assert any(expected_of(case, other) for other in LAYERS if other != name), f"{case}: no layer refuses it"
        return
    assert errors, f"{case}: the {name} layer accepted it"
    assert any(expected in e for e in errors), f"{case}: {expected!r} not in {errors}"


def test_a_broken_event_fails_the_validator_and_says_which_layer(validator):
    errors, _ = validator.check_event(mutate("run.runId", "run-1")(good_event()))
    assert {e.split("]")[0] + "]" for e in errors} == {f"[{name}]" for name in validator.names}


def test_fail_event_errormessage_needs_programming_language(layers):
    event = fail_event()
    del event["run"]["facets"]["errorMessage"]["programmingLanguage"]
    for layer in layers.values():
        assert any("'programmingLanguage' is a required property" in e for e in layer.check_event(event)), layer.name


def test_the_classes_run_their_own_validators(layers):
    """The objects are built, so openlineage-python's validators run (here: Run's UUID check)."""
    classes = layers["classes"]
    errors: list[str] = []
    built = classes._structure(good_event(), classes.base.RunEvent, "event", errors)
    assert errors == [] and isinstance(built, classes.base.RunEvent)
    assert built.run.facets["parent"].root.job.namespace == "airflow://prod"
    assert type(built.inputs[0].inputFacets["dataQualityAssertions"]).__name__ == "DataQualityAssertionsDatasetFacet"


def test_without_the_schemas_the_class_layer_runs_alone(tmp_path):
    """A fresh machine: no pinned schema files. The validator says so, validates with the classes,
    and refuses only when told to require the schemas."""
    absent = tmp_path / "no-spec"
    validator = olvalidate.Validator(absent, spec="auto")
    assert validator.names == ["classes"]
    assert "json-schema: NOT RUN" in validator.status() and str(absent) in validator.status()
    assert validator.check_event(good_event()) == ([], [])
    errors, _ = validator.check_event(mutate("run.runId", "run-1")(good_event()))
    assert errors and all(e.startswith("[classes]") for e in errors)
    with pytest.raises(olvalidate.SpecError, match="missing"):
        olvalidate.Validator(absent, spec="require")
    assert olvalidate.Validator(spec="skip").names == ["classes"]


def test_check_file(validator, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(good_event()) + "\n" + json.dumps(fail_event()) + "\n")
    assert validator.check_file(good)[:2] == (2, [])
    broken = tmp_path / "broken.jsonl"
    event = good_event()
    del event["run"]["runId"]
    broken.write_text(json.dumps(good_event()) + "\n" + json.dumps(event) + "\n")
    count, errors, _ = validator.check_file(broken)
    assert count == 2 and len(errors) == len(validator.layers)
    assert all(f"{broken}:2 (COMPLETE shopify_configuration)" in e for e in errors)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert validator.check_file(empty)[1] == [f"{empty}: no event"]
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n")
    assert "not JSON" in validator.check_file(garbage)[1][0]


def test_cli(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(good_event()) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(mutate("eventType", "DONE")(good_event())) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    for spec in ("auto", "skip"):
        assert olvalidate.main(["check", "--spec", spec, str(good)]) == 0
        assert olvalidate.main(["check", "--spec", spec, str(bad)]) == 1
        assert olvalidate.main(["check", "--spec", spec, str(empty)]) == 1
    out = capsys.readouterr().out
    assert "error:" in out and "lineage validation: classes" in out
    assert olvalidate.main(["check", "--spec", "require", "--spec-dir", str(tmp_path / "none"), str(good)]) == 2
    assert olvalidate.main(["status", "--spec", "auto", "--spec-dir", str(tmp_path / "none")]) == 0
    assert "json-schema: NOT RUN" in capsys.readouterr().out


def test_no_network(validator, monkeypatch):
    """An unknown schema URL is an error, not a download, in every layer."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the validator opened a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    event = copy.deepcopy(good_event())
    event["run"]["facets"]["nominalTime"]["_schemaURL"] = "https://example.com/X.json#/$defs/X"
    errors, _ = validator.check_event(event)
    assert len([e for e in errors if "no such schema installed" in e]) == len(validator.layers)


# --- with the JSON schemas: they and the class layer agree ----------------------------------------------------
def test_installed_schemas_are_verified(json_layer, tmp_path):
    """A copy whose bytes differ from spec.lock.json is refused, and install refuses such a source."""
    spec = tmp_path / "spec"
    shutil.copytree(json_layer.spec_dir, spec)
    assert len(olvalidate.load_spec(spec)) == len(olvalidate.lock_entries())
    target = spec / "facets/1-2-0/SchemaDatasetFacet.json"
    target.write_bytes(target.read_bytes().replace(b'"fields"', b'"felds"', 1))
    with pytest.raises(olvalidate.SpecError, match="differs from spec.lock.json"):
        olvalidate.load_spec(spec)
    with pytest.raises(olvalidate.SpecError, match="1 of"):
        olvalidate.install([spec], tmp_path / "installed")
    (spec / "2-0-2/OpenLineage.json").unlink()
    with pytest.raises(olvalidate.SpecError, match="missing"):
        olvalidate.load_spec(spec)


def _walk(node, doc_url, found, keywords, name=None):
    """(document, property, keyword, value) of every keyword below node."""
    if isinstance(node, dict):
        for keyword in keywords:
            if keyword in node and name is not None:
                found.append((doc_url, name, keyword, json.dumps(node[keyword], sort_keys=True)))
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop, sub in value.items():
                    _walk(sub, doc_url, found, keywords, prop)
            else:
                _walk(value, doc_url, found, keywords, name)
    elif isinstance(node, list):
        for item in node:
            _walk(item, doc_url, found, keywords, name)


def _module_documents(classes) -> dict[str, str]:
    out = {"base": olvalidate.CORE}
    for url, cls in classes.classes.items():
        out[cls.__module__.rsplit(".", 1)[-1]] = url.partition("#")[0]
    return out


def test_formats_table_is_the_schemas(json_layer, layers):
    """FORMATS lists exactly the `format`s of the pinned schemas."""
    found: list = []
    for url, doc in json_layer.docs.items():
        if url.startswith(olvalidate.SPEC_PREFIX):
            _walk(doc, url, found, ("format",))
    documents = _module_documents(layers["classes"])
    table = [(documents[module], field, "format", json.dumps(fmt)) for (module, _cls, field), fmt in olvalidate.FORMATS.items()]
    assert sorted(found) == sorted(table)


def test_other_constraints_of_the_schemas_are_handled(json_layer):
    """Every other value constraint of the pinned schemas is one the class layer checks."""
    found: list = []
    keywords = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "minLength", "maxLength",
                "minItems", "maxItems", "uniqueItems", "const", "minProperties", "maxProperties", "multipleOf")
    for url, doc in json_layer.docs.items():
        if url.startswith(olvalidate.SPEC_PREFIX):
            _walk(doc, url, found, keywords)
    minimum = [("JobTypeJobFacet.json", "windowDuration", "minimum", "1")]
    consts = [("BaseSubsetDatasetFacet.json", "type", "const", json.dumps(v)) for v in
              ("binary", "compare", "field", "literal", "partition", "location")]
    assert sorted((url.rsplit("/", 1)[-1], *rest) for url, *rest in found) == sorted(minimum + consts)
    assert list(olvalidate.MINIMUM.values()) == [1]


def _resolve(node: dict, doc: dict, docs: dict) -> tuple[dict, dict]:
    while isinstance(node, dict) and "$ref" in node and len(node) <= 2:
        target, _, pointer = node["$ref"].partition("#")
        doc = docs[target] if target else doc
        node = doc
        for part in pointer.strip("/").split("/"):
            node = node[part]
    return node, doc


def _merged(node: dict, doc: dict, docs: dict) -> tuple[dict, dict, dict, set]:
    """(node, its document, properties, required) with allOf merged; refs to the core's base types left out."""
    node, doc = _resolve(node, doc, docs)
    properties, required = dict(node.get("properties") or {}), set(node.get("required") or [])
    for item in node.get("allOf") or []:
        if item.get("$ref", "").startswith(olvalidate.CORE + "#/$defs/") and doc.get("$id") != olvalidate.CORE:
            continue
        _, _, sub_properties, sub_required = _merged(item, doc, docs)
        properties.update(sub_properties)
        required |= sub_required
    return node, doc, properties, required


class Comparer:
    """Walks openlineage-python's attrs classes and the JSON schemas side by side."""

    BASE_FIELDS = frozenset({"_producer", "_schemaURL", "_deleted"})

    def __init__(self, classes, docs):
        self.classes, self.docs, self.problems, self.seen = classes, docs, [], set()

    def compare_class(self, cls, node, doc, where):
        import attr

        if (cls, id(node)) in self.seen:
            return
        self.seen.add((cls, id(node)))
        attr.resolve_types(cls)
        node, doc, properties, required = _merged(node, doc, self.docs)
        fields = {f.name: f for f in attr.fields(cls)}
        is_facet = issubclass(cls, self.classes.base.BaseFacet)
        names = set(fields) - (self.BASE_FIELDS if is_facet else set())
        if names != set(properties):
            self.problems.append(f"{where}: class fields {sorted(names)} != schema properties {sorted(properties)}")
        extra = set(olvalidate.ClassValidator._lookup(olvalidate.EXTRA_REQUIRED, cls) or ())
        consts = {n for n in fields if (cls.__module__.rsplit(".", 1)[-1], n) in olvalidate.CONST_DEFAULTS}
        extra |= consts
        class_required = {n for n, f in fields.items() if f.default is attr.NOTHING or n in extra} - (self.BASE_FIELDS if is_facet else set())
        if class_required != required:
            self.problems.append(f"{where}: class requires {sorted(class_required)}, schema {sorted(required)}")
        for name in names & set(properties):
            if name in consts:
                if properties[name].get("const") != fields[name].default:
                    self.problems.append(f"{where}.{name}: class default {fields[name].default!r}, schema {properties[name]}")
                continue
            self.compare_hint(fields[name].type, properties[name], doc, f"{where}.{name}")

    def compare_hint(self, hint, node, doc, where):
        node, doc = _resolve(node, doc, self.docs)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            alternatives = [a for a in args if a is not type(None)]
            if len(alternatives) == 1:
                return self.compare_hint(alternatives[0], node, doc, where)
            options = node.get("anyOf") or node.get("oneOf") or []
            if len(options) != len(alternatives):
                self.problems.append(f"{where}: {len(alternatives)} classes, {len(options)} schema alternatives")
            for alternative, option in zip(alternatives, options, strict=False):
                self.compare_hint(alternative, option, doc, where)
            return
        if hint is typing.Any:
            return
        if origin is typing.Literal:
            if sorted(args) != sorted(node.get("enum") or [node.get("const")]):
                self.problems.append(f"{where}: literal {args}, schema {node}")
            return
        if len(node.get("anyOf") or []) == 1:
            node = {**{k: v for k, v in node.items() if k != "anyOf"}, **node["anyOf"][0]}
        simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
        if hint in simple:
            if node.get("type") != simple[hint]:
                self.problems.append(f"{where}: class {hint.__name__}, schema {node.get('type')}")
            return
        if origin is list:
            if node.get("type") != "array":
                self.problems.append(f"{where}: class list, schema {node.get('type')}")
                return
            return self.compare_hint(args[0], node.get("items", {}), doc, f"{where}[]")
        if origin is dict:
            if node.get("type") != "object":
                self.problems.append(f"{where}: class dict, schema {node.get('type')}")
                return
            item = node.get("additionalProperties", True)
            if isinstance(args[1], type) and issubclass(args[1], self.classes.base.BaseFacet):
                want = f"{olvalidate.CORE}#/$defs/{args[1].__name__}"
                ref = item.get("$ref", "") if isinstance(item, dict) else ""
                if (doc.get("$id", "") + ref if ref.startswith("#") else ref) != want:
                    self.problems.append(f"{where}: class dict of {args[1].__name__}, schema {item}")
                return
            if item is True or item == {}:
                if args[1] is not typing.Any:
                    self.problems.append(f"{where}: class dict of {args[1]}, schema any")
                return
            return self.compare_hint(args[1], item, doc, f"{where}{{}}")
        if isinstance(hint, type) and issubclass(hint, Enum):
            if sorted(m.value for m in hint) != sorted(node.get("enum") or []):
                self.problems.append(f"{where}: enum {[m.value for m in hint]}, schema {node.get('enum')}")
            return
        if isinstance(hint, type):
            return self.compare_class(hint, node, doc, where)
        self.problems.append(f"{where}: {hint!r} not compared")


def test_classes_say_what_the_schemas_say(json_layer, layers):
    """For every facet of spec.lock.json and for the RunEvent: the class's fields are the schema's
    properties, its required fields (with EXTRA_REQUIRED) the schema's, its types and enums the
    schema's, all the way down. So structuring into the classes checks what the schemas check,
    but for FORMATS, MINIMUM and CONST_DEFAULTS (the class layer's own tables, tested above) and the
    unknown fields the schemas let through."""
    classes = layers["classes"]
    comparer = Comparer(classes, json_layer.docs)
    core = json_layer.docs[olvalidate.CORE]
    comparer.compare_class(classes.base.RunEvent, core["$defs"]["RunEvent"], core, "RunEvent")
    for url, cls in sorted(classes.classes.items()):
        document, _, pointer = url.partition("#")
        doc = json_layer.docs[document]
        node = doc
        for part in pointer.strip("/").split("/"):
            node = node[part]
        comparer.compare_class(cls, node, doc, cls.__name__)
    assert comparer.problems == []
