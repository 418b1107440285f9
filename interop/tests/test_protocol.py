"""The Delta protocol shoplake writes, and that Spark 3.5 / Delta 3.3 reads it.

The protocol decides which engines can read (minReaderVersion, readerFeatures)
and write (minWriterVersion, writerFeatures) the table. It is recorded here
(EXPECTED) so that a dependency upgrade that raises it is noticed: raising it
can lock out readers such as older Databricks runtimes, Trino or DuckDB.
The observed protocol is also written to $INTEROP_WORK/protocol.json.
"""
import json
import os
from pathlib import Path

from conftest import commit_actions, generate, spark_read

# What deltalake 1.1.2 writes for shoplake's table (measured; see docs/interop.md).
# Change it only on purpose.
EXPECTED = {"minReaderVersion": 1, "minWriterVersion": 4}


def test_protocol_is_recorded_and_spark_reads_it(spark, local_lake, work, shoplake_bin):
    sl = local_lake.shoplake
    src = generate(shoplake_bin, work / f"protocol-{local_lake.id}", "2019-04-01", "2019-04-01", 50, seed=41)
    table, spark_table = local_lake.table("shopify_configuration")
    sl.ingest(table, src, "2019-04-01")
    actions = commit_actions(spark, spark_table, 0)
    protocol = next(a["protocol"] for a in actions if "protocol" in a)
    metadata = next(a["metaData"] for a in actions if "metaData" in a)
    observed = {"protocol": protocol, "configuration": metadata.get("configuration", {})}
    Path(os.environ.get("INTEROP_WORK", work), "protocol.json").write_text(json.dumps(observed, indent=2))

    detail = spark.sql(f"DESCRIBE DETAIL delta.`{spark_table}`").collect()[0].asDict()
    assert detail["minReaderVersion"] == protocol["minReaderVersion"]
    assert detail["minWriterVersion"] == protocol["minWriterVersion"]
    features = set(protocol.get("readerFeatures", [])) | set(protocol.get("writerFeatures", []))
    assert set(detail.get("tableFeatures") or []) >= features
    assert spark_read(spark, spark_table).count() > 0

    core = {k: protocol[k] for k in ("minReaderVersion", "minWriterVersion")}
    assert core == EXPECTED, f"shoplake now writes protocol {protocol} (was {EXPECTED})"
    if protocol["minWriterVersion"] >= 7:
        assert "writerFeatures" in protocol
