"""Fixtures of the catalog tier (catalogs/test.sh).

catalogs/test.sh installs everything and runs these tests with:

    SHOPLAKE_BIN          the binary under test (a private copy)
    CATALOG_TMP           this run's scratch directory: logs/, pids/, work/, servers' data
    CATALOG_MOTO_SERVER   moto's `moto_server`     CATALOG_MINIO_BIN   MinIO
    CATALOG_JAVA          a JDK 24+ `java`         CATALOG_TRINO_HOME  Trino 476 (bin, lib, plugin/delta-lake)

Fixtures (servers in services.py, each on a free port of 127.0.0.1):
    stack       moto (Glue), MinIO (buckets raw, lake) and Trino, started at once
                for the session and stopped at its end; their startup times and
                Trino's memory are printed in the summary
    glue, s3    boto3 clients of moto's Glue and of MinIO (root)
    trino       trino(sql[, dicts=True]) -> rows, on catalog `delta` (Glue = moto, S3 = MinIO)
    shoplake    shoplake(*args) runs the binary: S3 at MinIO, Glue at moto
                (AWS_ENDPOINT_URL_S3 / _GLUE), MinIO's root credentials unless told
    glue_users  a second moto, IAM enforced on Glue's ARNs (moto_glue_iam.py), with
                two users (one may not glue:CreateTable) whose keys are MinIO users too
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import boto3
import pytest
import services
from botocore.config import Config
from minio import MinioAdmin
from minio.credentials import StaticProvider

REGION = services.REGION
ACCOUNT = "123456789012"  # moto's default account
MEASURED = {}  # what the summary prints: startup seconds per server, Trino's memory


def need(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run these tests through catalogs/test.sh", 2)
    return value


@dataclass(frozen=True)
class Creds:
    access_key: str
    secret_key: str


def client(service, endpoint, creds):
    return boto3.client(
        service, endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


@pytest.fixture(scope="session")
def tmp():
    return Path(need("CATALOG_TMP"))


@pytest.fixture(scope="session")
def stack(tmp):
    moto = services.start_moto(tmp)
    minio = services.start_minio(tmp)
    trino = services.start_trino(tmp, glue=moto, s3=minio)
    started = [moto, minio, trino]
    try:
        for server in started:
            server.wait()
            MEASURED[f"{server.name} startup"] = f"{server.startup_secs:.1f}s"
        minio.creds = Creds(minio.root_user, minio.root_password)
        s3 = client("s3", minio.endpoint, minio.creds)
        for bucket in ("raw", "lake"):
            s3.create_bucket(Bucket=bucket)
        yield SimpleNamespace(moto=moto, minio=minio, trino=trino)
        MEASURED["trino memory"] = f"{trino.memory_mib()} MiB resident, {trino.memory_mib('VmHWM')} MiB at peak"
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def glue(stack):
    return client("glue", stack.moto.endpoint, Creds("catalog-test", "catalog-test"))


@pytest.fixture(scope="session")
def s3(stack):
    return client("s3", stack.minio.endpoint, stack.minio.creds)


@pytest.fixture(scope="session")
def trino(stack):
    return lambda sql, dicts=False: services.trino_query(stack.trino.port, sql, dicts)


@dataclass
class Result:
    args: list
    rc: int
    out: str
    err: str

    def __str__(self):
        tail = "\n".join(self.err.strip().splitlines()[-10:])
        return f"`shoplake {' '.join(self.args)}` exited {self.rc}\n--- stderr (tail) ---\n{tail}\n--- stdout ---\n{self.out[:1500]}"


@pytest.fixture(scope="session")
def shoplake(stack, tmp):
    """shoplake(*args, creds=, glue_endpoint=, check=True): runs the binary in
    CATALOG_TMP/work (no ./tables there: the built-in definitions), logging each
    run to work/shoplake-runs.log."""
    workdir = tmp / "work"
    workdir.mkdir(parents=True, exist_ok=True)

    def run(*args, creds=None, glue_endpoint=None, check=True, timeout=300):
        creds = creds or stack.minio.creds
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHOPLAKE_", "RUST_LOG"))}
        env.update(
            AWS_ENDPOINT_URL_S3=stack.minio.endpoint,
            AWS_ENDPOINT_URL_GLUE=glue_endpoint or stack.moto.endpoint,
            AWS_REGION=REGION,
            AWS_ACCESS_KEY_ID=creds.access_key,
            AWS_SECRET_ACCESS_KEY=creds.secret_key,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        args = [str(a) for a in args]
        t0 = time.monotonic()
        p = subprocess.run([need("SHOPLAKE_BIN"), *args], env=env, cwd=workdir, capture_output=True, text=True,
                           timeout=timeout, check=False)
        with (workdir / "shoplake-runs.log").open("a") as log:
            log.write(f"\n$ shoplake {' '.join(args)}   [{creds.access_key}]\n")
            log.write(f"exit {p.returncode} after {time.monotonic() - t0:.2f}s\n{p.stderr}{p.stdout}")
        result = Result(args, p.returncode, p.stdout, p.stderr)
        if check:
            assert result.rc == 0, str(result)
        return result

    return run


# --- glue_users: IAM enforced -------------------------------------------------------
# The loader's own Glue statement (deploy/aws/policies/loader.json, RegisterInGlue), as
# the stack grants it: what is proven here is the policy users get.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "aws" / "policies"))
import render


def glue_policy(database, without=()):
    """The loader's Glue statement for `database`, less the actions in `without`."""
    policy = render.glue_policy(REGION, ACCOUNT, database)
    for statement in policy["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a not in without]
    return policy


@pytest.fixture(scope="session")
def glue_users(stack, tmp):
    """A moto with IAM enforced and two users, `writer` (the loader's Glue
    statement) and `no_create` (the same less glue:CreateTable), on database `catalog_iam`;
    each user's access key is also a MinIO user (policy readwrite), so one
    identity serves S3 and Glue. The policies name Glue ARNs, which moto checks
    only through moto_glue_iam.py. Moto lets the first 3 requests through
    unauthenticated (INITIAL_NO_AUTH_ACTION_COUNT): they make an admin user."""
    moto = services.start_moto(tmp, name="moto-iam", iam_after=3)
    try:
        moto.wait()
        MEASURED["moto-iam startup"] = f"{moto.startup_secs:.1f}s"
        iam = client("iam", moto.endpoint, Creds("bootstrap", "bootstrap"))
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = Creds(key["AccessKeyId"], key["SecretAccessKey"])
        iam = client("iam", moto.endpoint, admin)

        minio_admin = MinioAdmin(
            endpoint=urlparse(stack.minio.endpoint).netloc, secure=False,
            credentials=StaticProvider(stack.minio.root_user, stack.minio.root_password),
        )
        database = "catalog_iam"
        users = {}
        for name, without in (("writer", ()), ("no_create", ("glue:CreateTable",))):
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="glue", PolicyDocument=json.dumps(glue_policy(database, without)))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            users[name] = Creds(key["AccessKeyId"], key["SecretAccessKey"])
            minio_admin.user_add(key["AccessKeyId"], key["SecretAccessKey"])
            minio_admin.attach_policy(["readwrite"], user=key["AccessKeyId"])
        yield SimpleNamespace(endpoint=moto.endpoint, admin=admin, database=database, **users)
    finally:
        moto.stop()


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.write_sep("-", "catalog tier: measured")
        for what, value in MEASURED.items():
            terminalreporter.write_line(f"{what}: {value}")
