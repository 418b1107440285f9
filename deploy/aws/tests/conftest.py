"""Fixtures of the security tier (`make security-test`, deploy/aws/test.sh).

deploy/aws/test.sh starts a MinIO (with its built-in KMS and a static key) and
a LocalStack (S3, KMS, IAM, STS, CloudFormation) of their own on free ports,
then runs these tests with:

    SHOPLAKE_BIN              the binary under test
    SECTEST_MINIO_ENDPOINT    http://127.0.0.1:PORT, root SECTEST_MINIO_ROOT_USER/_PASSWORD,
                              KMS key name SECTEST_MINIO_KMS_KEY
    SECTEST_LOCALSTACK_ENDPOINT
    SECTEST_WORKDIR           scratch directory (shoplake's working directory, logs)

Nothing is mocked: every check is a real request to a real server, and
shoplake runs as a subprocess with only the credentials of the role under test.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from minio import MinioAdmin
from minio.credentials import StaticProvider

AWS_DIR = Path(__file__).resolve().parent.parent
# The tests `import render` (deploy/aws/policies/render.py): the policies
# they grant are the very JSON files the stack carries.
sys.path.insert(0, str(AWS_DIR / "policies"))

REGION = "us-east-1"
TEMPLATE = AWS_DIR / "shoplake.cfn.yaml"


def need(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run these tests through deploy/aws/test.sh (make security-test)", 2)
    return value


@dataclass(frozen=True)
class Creds:
    access_key: str
    secret_key: str
    session_token: str = ""


@dataclass
class Result:
    args: list
    rc: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)

    def __str__(self):
        tail = "\n".join(self.err.strip().splitlines()[-8:])
        return f"`shoplake {' '.join(self.args)}` exited {self.rc}\n--- stderr (tail) ---\n{tail}\n--- stdout ---\n{self.out[:1500]}"


class Shoplake:
    """Runs the binary with exactly one set of credentials and one endpoint."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = Path(workdir)
        self.log = self.workdir / "shoplake-runs.log"
        self._help = None

    def __call__(self, endpoint, creds, *args, env=None, timeout=300):
        """creds None: no static credentials (env must bring another source, e.g. web identity)."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHOPLAKE_", "RUST_LOG"))}
        environment.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        if creds is not None:
            environment.update(AWS_ACCESS_KEY_ID=creds.access_key, AWS_SECRET_ACCESS_KEY=creds.secret_key)
            if creds.session_token:
                environment["AWS_SESSION_TOKEN"] = creds.session_token
        environment.update(env or {})
        args = [str(a) for a in args]
        started = time.monotonic()
        p = subprocess.run(
            [self.binary, *args], env=environment, cwd=self.workdir, capture_output=True, text=True, timeout=timeout,
            check=False,
        )
        with self.log.open("a") as log:
            who = creds.access_key if creds else "no static credentials"
            log.write(f"\n$ shoplake {' '.join(args)}   [{who} @ {endpoint}; env {env or {}}]\n")
            log.write(f"exit {p.returncode} after {time.monotonic() - started:.2f}s\n{p.stderr}{p.stdout}")
        return Result(args, p.returncode, p.stdout, p.stderr)

    def has_sse_flags(self):
        if self._help is None:
            self._help = subprocess.run([self.binary, "--help"], capture_output=True, text=True, check=False).stdout
        return "--s3-sse" in self._help


def s3_client(endpoint, creds):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def snapshot(s3, bucket, prefix=""):
    """Every object under prefix: key -> (ETag, size, LastModified)."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            found[o["Key"]] = (o["ETag"], o["Size"], o["LastModified"])
    return found


def encryption_of(s3, bucket, prefix=""):
    """key -> (x-amz-server-side-encryption, KMS key id, ETag) from a HEAD of each object."""
    out = {}
    for key in snapshot(s3, bucket, prefix):
        h = s3.head_object(Bucket=bucket, Key=key)
        out[key] = (h.get("ServerSideEncryption"), h.get("SSEKMSKeyId"), h["ETag"])
    return out


def assert_unchanged(before, after, what):
    added = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    rewritten = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or gone or rewritten), f"{what} wrote to S3: added {added}, deleted {gone}, rewritten {rewritten}"


# How stderr may name a refused S3 action: the HTTP method or the API name.
ACTION_NAMES = {
    "GET": ("GET", "GetObject"),
    "HEAD": ("HEAD", "HeadObject"),
    "PUT": ("PUT", "PutObject"),
    "DELETE": ("DELETE", "DeleteObject"),
}


def assert_denied(result, action, object_hint):
    """Exit 2 with "access denied", the S3 action (PUT, GET, DELETE...) and the object it was refused."""
    assert result.rc == 2, f"expected exit 2 (access denied)\n{result}"
    err = result.err
    assert "access denied" in err.lower(), f"no 'access denied' on stderr\n{result}"
    assert any(name in err for name in ACTION_NAMES[action]), f"stderr does not name the refused {action}\n{result}"
    assert object_hint in err, f"stderr does not name the refused object ({object_hint}...)\n{result}"


def normalized(policy):
    """A policy document as MinIO stores it: every Action, Resource and condition value a sorted list."""

    def as_list(value):
        return sorted(value) if isinstance(value, list) else [value]

    statements = []
    for st in policy["Statement"]:
        st = dict(st)
        for key in ("Action", "Resource"):
            if key in st:
                st[key] = as_list(st[key])
        if "Condition" in st:
            st["Condition"] = {op: {k: as_list(v) for k, v in kv.items()} for op, kv in st["Condition"].items()}
        statements.append(st)
    return dict(policy, Statement=statements)


def new_id():
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def shoplake():
    workdir = Path(need("SECTEST_WORKDIR"))
    workdir.mkdir(parents=True, exist_ok=True)
    return Shoplake(need("SHOPLAKE_BIN"), workdir)


@pytest.fixture(scope="session")
def sse(shoplake):
    """Fails (not skips) when the binary lacks the encryption flags: the tier promises them."""
    if not shoplake.has_sse_flags():
        pytest.fail(f"{shoplake.binary} has no --s3-sse (`shoplake --help`): the encryption contract of issue #19 is not built in")


class Minio:
    def __init__(self):
        self.endpoint = need("SECTEST_MINIO_ENDPOINT")
        self.root = Creds(need("SECTEST_MINIO_ROOT_USER"), need("SECTEST_MINIO_ROOT_PASSWORD"))
        self.kms_key = need("SECTEST_MINIO_KMS_KEY")
        self.s3 = s3_client(self.endpoint, self.root)
        self.admin = MinioAdmin(
            endpoint=self.endpoint.removeprefix("http://"),
            credentials=StaticProvider(self.root.access_key, self.root.secret_key),
            secure=False,
        )

    def bucket(self, name, versioned=False):
        self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def user(self, role, policy):
        """A new MinIO user holding exactly one policy, `policy` (a document)."""
        name = f"{role}-{new_id()}"
        self.admin.policy_add(name, policy=policy)
        secret = uuid.uuid4().hex
        self.admin.user_add(name, secret)
        self.admin.attach_policy([name], user=name)
        return Creds(name, secret)

    def policies_of(self, creds):
        info = json.loads(self.admin.user_info(creds.access_key))
        names = [n for n in info.get("policyName", "").split(",") if n]
        return {n: json.loads(self.admin.policy_info(n)) for n in names}


@pytest.fixture(scope="session")
def minio():
    return Minio()


class LocalStack:
    def __init__(self):
        self.endpoint = need("SECTEST_LOCALSTACK_ENDPOINT")
        self.root = Creds("test", "test")
        self.s3 = s3_client(self.endpoint, self.root)

    def client(self, service):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.root.access_key,
            aws_secret_access_key=self.root.secret_key,
        )


@pytest.fixture(scope="session")
def localstack():
    return LocalStack()
