"""Encryption at rest: `--s3-sse aws:kms|AES256` and `--s3-kms-key-id`
(SHOPLAKE_S3_SSE, SHOPLAKE_S3_KMS_KEY_ID), checked with a HEAD of every
object shoplake wrote (its x-amz-server-side-encryption and KMS key id).

  LocalStack  a key created in its KMS; generate and ingest with the flags
              (and with the environment variables) write every object, the
              multipart ones included, with aws:kms and that key; AES256.
  MinIO       its built-in KMS with the static key deploy/aws/test.sh gives
              it: without the flags objects are plain; AES256; aws:kms with
              the key; the table reads back.
  policies    which server enforces a bucket policy for a signed request
              (neither: MinIO applies bucket policies to anonymous requests
              only, LocalStack's community edition none), so the deny
              statements are proven on MinIO as a user policy:
              - the stack's (policies/lake-bucket.json): a PUT naming another
                encryption is refused (exit 2, nothing written); the flags,
                or none (the bucket's default key), load, multipart included;
              - a strict "deny every PUT without the header" rule: a load
                without the flags exits 2 and writes nothing, with them it
                loads; but a data file over 5 MB is refused, because the
                parts of a multipart upload never carry the header: why the
                stack does not use that rule.
"""

import json
import uuid

import pytest
import render
from botocore.exceptions import ClientError
from conftest import (
    assert_denied,
    assert_unchanged,
    encryption_of,
    new_id,
    s3_client,
    snapshot,
)

DATE = "2019-04-01"
BIG_ROWS = 200_000  # two ~8 MB data files (two writers) and a ~40 MB export: all multipart (parts of 5 MiB)
TABLE = "shopify_configuration"
pytestmark = pytest.mark.usefixtures("sse")


def count(shoplake, endpoint, creds, lake):
    r = shoplake(endpoint, creds, "query", "--lake", lake, "--sql", f"SELECT count(*) AS n FROM {TABLE}", "--format", "csv")
    assert r.rc == 0, str(r)
    return int(r.out.splitlines()[1])


def assert_all_encrypted(found, algorithm, key_id=None, what="objects"):
    assert found, f"no {what} to check"
    wrong = {k: v[:2] for k, v in found.items() if v[0] != algorithm or (key_id and not (v[1] or "").endswith(key_id))}
    assert not wrong, f"{what} not encrypted with {algorithm} {key_id or ''}: {wrong}"


def multipart(found):
    return [k for k, (_, _, etag) in found.items() if "-" in etag.strip('"')]


def kms_flags(key):
    return ["--s3-sse", "aws:kms", "--s3-kms-key-id", key]


# --- LocalStack ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ls_world(localstack):
    key = localstack.client("kms").create_key(Description="shoplake security test")["KeyMetadata"]
    bucket = f"sse-{new_id()}"
    localstack.s3.create_bucket(Bucket=bucket)
    return {"key_arn": key["Arn"], "bucket": bucket}


def test_localstack_kms_key_on_every_object(localstack, shoplake, ls_world):
    b, key = ls_world["bucket"], ls_world["key_arn"]
    source, lake = f"s3://{b}/exports", f"s3://{b}/lake"
    r = shoplake(localstack.endpoint, localstack.root, *kms_flags(key), "generate", "--from", DATE, "--to", DATE, "--rows", BIG_ROWS, "--out", source)
    assert r.rc == 0, str(r)
    exports = encryption_of(localstack.s3, b, "exports/")
    assert_all_encrypted(exports, "aws:kms", key, "the exports shoplake generated")
    # The environment's form of the same setting.
    env = {"SHOPLAKE_S3_SSE": "aws:kms", "SHOPLAKE_S3_KMS_KEY_ID": key}
    r = shoplake(localstack.endpoint, localstack.root, "ingest", "--date", DATE, "--source", source, "--lake", lake, "--format", "json", env=env)
    assert r.rc == 0, str(r)
    written = encryption_of(localstack.s3, b, "lake/")
    assert_all_encrypted(written, "aws:kms", key, "the table's objects")
    assert any("/_delta_log/" in k for k in written) and any(k.endswith(".parquet") for k in written)
    assert multipart(exports) and multipart(written), "no multipart upload was exercised"
    assert count(shoplake, localstack.endpoint, localstack.root, lake) == r.json()["rows_valid"]


def test_localstack_aes256(localstack, shoplake, ls_world):
    b = ls_world["bucket"]
    r = shoplake(localstack.endpoint, localstack.root, "--s3-sse", "AES256", "generate", "--from", DATE, "--to", DATE, "--rows", 300, "--out", f"s3://{b}/aes-exports")
    assert r.rc == 0, str(r)
    r = shoplake(localstack.endpoint, localstack.root, "--s3-sse", "AES256", "ingest", "--date", DATE, "--source", f"s3://{b}/aes-exports", "--lake", f"s3://{b}/aes-lake")
    assert r.rc == 0, str(r)
    found = encryption_of(localstack.s3, b, "aes-")
    assert_all_encrypted(found, "AES256", what="objects written with AES256")
    assert all(v[1] is None for v in found.values()), "an AES256 object names a KMS key"


# --- MinIO ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mw(minio, shoplake):
    run = new_id()
    w = {"exports": minio.bucket(f"sse-exports-{run}"), "lake": minio.bucket(f"sse-lake-{run}")}
    w["values"] = {"ExportsBucket": w["exports"], "ExportsPrefix": "daily", "LakeBucket": w["lake"], "LakePrefix": "lake", "KmsKeyArn": minio.kms_key}
    w["loader"] = render.document("loader", w["values"], no_kms=True, no_glue=True)
    w["source"] = f"s3://{w['exports']}/daily"
    for rows, prefix in ((300, "daily"), (BIG_ROWS, "daily/big")):
        r = shoplake(minio.endpoint, minio.root, "generate", "--from", DATE, "--to", DATE, "--rows", rows, "--out", f"s3://{w['exports']}/{prefix}")
        assert r.rc == 0, str(r)
    return w


def load(minio, shoplake, mw, creds, lake_prefix, *flags, source=None, env=None, extra=()):
    lake = f"s3://{mw['lake']}/{lake_prefix}"
    args = [*flags, "ingest", "--date", DATE, "--source", source or mw["source"], "--lake", lake, "--format", "json", *extra]
    return shoplake(minio.endpoint, creds, *args, env=env), lake


def test_minio_without_the_flags_objects_are_plain(minio, shoplake, mw):
    r, _ = load(minio, shoplake, mw, minio.root, "lake/plain")
    assert r.rc == 0, str(r)
    found = encryption_of(minio.s3, mw["lake"], "lake/plain/")
    assert found and all(v[0] is None for v in found.values()), found


def test_minio_aes256(minio, shoplake, mw):
    r, lake = load(minio, shoplake, mw, minio.root, "lake/aes", "--s3-sse", "AES256")
    assert r.rc == 0, str(r)
    assert_all_encrypted(encryption_of(minio.s3, mw["lake"], "lake/aes/"), "AES256", what="objects written with AES256")
    assert count(shoplake, minio.endpoint, minio.root, lake) == r.json()["rows_valid"]


def test_minio_kms_static_key_on_every_object(minio, shoplake, mw):
    source = f"s3://{mw['exports']}/kms"
    r = shoplake(minio.endpoint, minio.root, *kms_flags(minio.kms_key), "generate", "--from", DATE, "--to", DATE, "--rows", BIG_ROWS, "--out", source)
    assert r.rc == 0, str(r)
    exports = encryption_of(minio.s3, mw["exports"], "kms/")
    assert_all_encrypted(exports, "aws:kms", minio.kms_key, "the exports shoplake generated")
    env = {"SHOPLAKE_S3_SSE": "aws:kms", "SHOPLAKE_S3_KMS_KEY_ID": minio.kms_key}
    r, lake = load(minio, shoplake, mw, minio.root, "lake/kms", source=source, env=env)
    assert r.rc == 0, str(r)
    written = encryption_of(minio.s3, mw["lake"], "lake/kms/")
    assert_all_encrypted(written, "aws:kms", minio.kms_key, "the table's objects")
    assert multipart(exports) and multipart(written), "no multipart upload was exercised"
    assert count(shoplake, minio.endpoint, minio.root, lake) == r.json()["rows_valid"]


def test_which_server_enforces_a_bucket_policy(minio, localstack, mw, ls_world):
    """Measured: a signed PUT without the header passes a bucket policy denying it, on both servers."""
    deny = {"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyPutsWithoutEncryptionHeader", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::BUCKET/*", "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}]}
    loader = minio.user("probe", mw["loader"])
    servers = {"minio": (minio.s3, s3_client(minio.endpoint, loader), mw["lake"]),
               "localstack": (localstack.s3, localstack.s3, ls_world["bucket"])}
    outcome = {}
    for name, (admin, writer, bucket) in servers.items():
        admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny).replace("BUCKET", bucket))
        try:
            writer.put_object(Bucket=bucket, Key=f"lake/probe-{uuid.uuid4().hex}", Body=b"x")
            outcome[name] = "not enforced"
        except ClientError as e:
            outcome[name] = e.response["Error"]["Code"]
        finally:
            admin.delete_bucket_policy(Bucket=bucket)
    assert outcome == {"minio": "not enforced", "localstack": "not enforced"}, (
        f"a server now enforces bucket policies for signed requests ({outcome}): test the bucket policy itself there"
    )


def lake_policy_user(minio, mw, role, extra_statements):
    doc = dict(mw["loader"], Statement=mw["loader"]["Statement"] + extra_statements)
    return minio.user(role, doc)


def test_minio_stack_lake_policy(minio, shoplake, mw):
    """policies/lake-bucket.json (as a user policy; no TLS on this MinIO) with the bucket's default key."""
    statements = render.document("lake-bucket", mw["values"], as_user_policy=True, without=["DenyInsecureTransport"])["Statement"]
    user = lake_policy_user(minio, mw, "stack-lake", statements)
    minio.s3.put_bucket_encryption(Bucket=mw["lake"], ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": minio.kms_key}}]})
    try:
        before = snapshot(minio.s3, mw["lake"])
        r, _ = load(minio, shoplake, mw, user, "lake/stack-aes", "--s3-sse", "AES256")
        assert_denied(r, "PUT", f"{mw['lake']}/lake/stack-aes/")
        assert_unchanged(before, snapshot(minio.s3, mw["lake"]), "a load naming AES256")
        for prefix, flags in (("lake/stack-default", []), ("lake/stack-kms", kms_flags(minio.kms_key))):
            r, _ = load(minio, shoplake, mw, user, prefix, *flags, source=f"s3://{mw['exports']}/daily/big")
            assert r.rc == 0, str(r)
            written = encryption_of(minio.s3, mw["lake"], prefix + "/")
            assert_all_encrypted(written, "aws:kms", minio.kms_key, f"{prefix} objects")
            assert multipart(written), "no multipart upload was exercised"
    finally:
        minio.s3.delete_bucket_encryption(Bucket=mw["lake"])


def test_minio_strict_header_rule(minio, shoplake, mw):
    """Deny every PUT without x-amz-server-side-encryption: the flag is needed; multipart breaks."""
    strict = [{"Sid": "DenyPutsWithoutEncryptionHeader", "Effect": "Deny", "Action": "s3:PutObject",
               "Resource": f"arn:aws:s3:::{mw['lake']}/*", "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}]
    user = lake_policy_user(minio, mw, "strict", strict)
    before = snapshot(minio.s3, mw["lake"])
    r, _ = load(minio, shoplake, mw, user, "lake/strict")
    assert_denied(r, "PUT", f"{mw['lake']}/lake/strict/")
    assert_unchanged(before, snapshot(minio.s3, mw["lake"]), "a load without the encryption flags")
    r, lake = load(minio, shoplake, mw, user, "lake/strict", *kms_flags(minio.kms_key))
    assert r.rc == 0, str(r)
    assert_all_encrypted(encryption_of(minio.s3, mw["lake"], "lake/strict/"), "aws:kms", minio.kms_key, "objects")
    rows = count(shoplake, minio.endpoint, user, lake)
    big = ["--max-delete-ratio", "1"]  # another export of the same date
    r, _ = load(minio, shoplake, mw, user, "lake/strict", *kms_flags(minio.kms_key), source=f"s3://{mw['exports']}/daily/big", extra=big)
    assert_denied(r, "PUT", f"{mw['lake']}/lake/strict/")
    assert count(shoplake, minio.endpoint, user, lake) == rows, "a refused load changed the table"
