"""The Delta protocol shoplake writes, and that Spark 3.5 / Delta 3.3 reads it.

The protocol decides which engines can read (minReaderVersion, readerFeatures)
and write (minWriterVersion, writerFeatures) the table. It is recorded here
(EXPECTED) so that a dependency upgrade that raises it is noticed: raising it
can lock out readers such as older Databricks runtimes, Trino or DuckDB.
The observed protocol (per table) is also written to $INTEROP_WORK/protocol.json.

Both built-in definitions get the same protocol: reader 1 (no reader
feature: no column mapping, deletion vectors or timestamp without time
zone), writer 4 because `delta.enableChangeDataFeed` is on (CDF needs
writer 4; nothing shoplake declares needs more). test_spark_evolution.py
checks that adding a column leaves it so.
"""
import json
import os
from pathlib import Path

from conftest import commit_actions, generate, spark_read

# What deltalake 1.1.2 writes for shoplake's table (measured; see docs/interop.md).
# Change it only on purpose.
EXPECTED = {"minReaderVersion": 1, "minWriterVersion": 4}


def test_protocol_is_recorded_and_spark_reads_it(spark, local_lake, table_def, work, shoplake_bin):
    sl = local_lake.shoplake.for_table(table_def)
    src = generate(shoplake_bin, work / f"protocol-{local_lake.id}-{table_def.name}", "2019-04-01", "2019-04-01", 50,
                   seed=41, defn=table_def)
    table, spark_table = local_lake.table(table_def.name)
    sl.ingest(table, src, "2019-04-01")
    actions = commit_actions(spark, spark_table, 0)
    protocol = next(a["protocol"] for a in actions if "protocol" in a)
    metadata = next(a["metaData"] for a in actions if "metaData" in a)
    observed = {"protocol": protocol, "configuration": metadata.get("configuration", {})}
    record = Path(os.environ.get("INTEROP_WORK", work), "protocol.json")
    recorded = json.loads(record.read_text()) if record.exists() else {}
    recorded[table_def.name] = observed
    record.write_text(json.dumps(recorded, indent=2))

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
