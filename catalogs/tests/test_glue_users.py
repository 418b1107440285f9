"""The `glue_users` fixture: IAM enforced on Glue, one identity for Glue and S3.

`writer` may create and update tables of database catalog_iam, `no_create`
the same less glue:CreateTable; both access keys are MinIO users too.
"""

import json

import pytest
from botocore.exceptions import ClientError
from conftest import client
from glue_tables import table_input

SCHEMA = {"schemaString": json.dumps({"type": "struct", "fields": [{"name": "id", "type": "string"}]})}


def error_code(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def test_create_table_needs_its_permission(glue_users):
    db = glue_users.database
    writer = client("glue", glue_users.endpoint, glue_users.writer)
    no_create = client("glue", glue_users.endpoint, glue_users.no_create)
    # The database may be there already (test_glue.py's loads make it): creating it again is refused as such.
    try:
        writer.create_database(DatabaseInput={"Name": db})
    except ClientError as e:
        assert e.response["Error"]["Code"] == "AlreadyExistsException"
    entry = table_input("orders", "s3://lake/iam/orders", SCHEMA)

    assert error_code(lambda: no_create.create_table(DatabaseName=db, TableInput=entry)) == "AccessDeniedException"
    writer.create_table(DatabaseName=db, TableInput=entry)
    # What no_create may do, it can: read the entry and update it.
    assert no_create.get_table(DatabaseName=db, Name="orders")["Table"]["Parameters"]["table_type"] == "DELTA"
    no_create.update_table(DatabaseName=db, TableInput={**entry, "Description": "updated"})
    assert writer.get_table(DatabaseName=db, Name="orders")["Table"]["Description"] == "updated"


def test_policies_name_one_database(glue_users):
    writer = client("glue", glue_users.endpoint, glue_users.writer)
    assert error_code(lambda: writer.create_database(DatabaseInput={"Name": "elsewhere"})) == "AccessDeniedException"
    assert error_code(lambda: writer.get_tables(DatabaseName=glue_users.database)) == "AccessDeniedException"


def test_the_same_keys_are_minio_users(glue_users, stack):
    for name in ("writer", "no_create"):
        s3 = client("s3", stack.minio.endpoint, getattr(glue_users, name))
        s3.put_object(Bucket="lake", Key=f"iam/{name}.txt", Body=name.encode())
        assert s3.get_object(Bucket="lake", Key=f"iam/{name}.txt")["Body"].read() == name.encode()
