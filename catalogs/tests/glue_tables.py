"""A Delta table's Glue entry, made by the tests themselves (no shoplake).

The shape that Athena, Trino and Spark all read: TableType EXTERNAL_TABLE;
Parameters table_type=DELTA, spark.sql.sources.provider=delta, EXTERNAL=TRUE;
Location and SerdeInfo's `path` s3://bucket/prefix (not s3a); columns in Hive
types, partition columns among them; no PartitionKeys (moto cannot evaluate
the empty GetPartitions expression Trino would send).
"""

import json

HIVE_NAMES = {"long": "bigint", "integer": "int", "short": "smallint", "byte": "tinyint"}


def hive_type(t):
    """A Delta schema type (JSON) as a Hive type string."""
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "array":
            return f"array<{hive_type(t['elementType'])}>"
        if kind == "map":
            return f"map<{hive_type(t['keyType'])},{hive_type(t['valueType'])}>"
        if kind == "struct":
            return "struct<" + ",".join(f"{f['name']}:{hive_type(f['type'])}" for f in t["fields"]) + ">"
        raise ValueError(f"unknown Delta type {t}")
    return HIVE_NAMES.get(t, t)  # string, boolean, int types, float, double, date, timestamp, binary, decimal(p,s)


def delta_metadata(s3, bucket, prefix):
    """The latest metaData action of the table at s3://bucket/prefix, from its JSON
    commits (a test table: no checkpoint is read)."""
    log = f"{prefix.rstrip('/')}/_delta_log/"
    keys = sorted(
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=log)
        for o in page.get("Contents", [])
        if o["Key"].endswith(".json")
    )
    meta = None
    for key in keys:
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines():
            action = json.loads(line)
            meta = action.get("metaData", meta)
    if meta is None:
        raise ValueError(f"no metaData in s3://{bucket}/{log}")
    return meta


def table_input(name, location, metadata):
    """Glue's TableInput for the Delta table at `location` (s3://bucket/prefix)."""
    fields = json.loads(metadata["schemaString"])["fields"]
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"table_type": "DELTA", "spark.sql.sources.provider": "delta", "EXTERNAL": "TRUE"},
        "StorageDescriptor": {
            "Columns": [{"Name": f["name"], "Type": hive_type(f["type"])} for f in fields],
            "Location": location,
            "SerdeInfo": {"Parameters": {"path": location, "serialization.format": "1"}},
        },
    }
