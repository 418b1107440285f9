"""deploy/aws/shoplake.cfn.yaml: what the template says, deployed to
LocalStack (CloudFormation, S3, KMS, IAM, STS), then a load through it.

  template    the security properties the README promises, read from the
              template itself (both buckets: default SSE-KMS with the stack's
              key, public access blocked, TLS-only; versions on the exports;
              key rotation); its policies are policies/*.json (render.py);
              the loader's Glue grant is the five registration actions on
              the catalog, the one database GlueDatabase and its tables.
  deployed    the stack creates (GlueDatabase given); the key is enabled and
              rotates; the exports bucket keeps versions; the bucket
              policies, the three roles' policies (the loader's Glue
              statement naming the stack's region, account and database) and
              the IRSA role's trust and policy are the rendered JSON
              documents, read back from S3 and IAM.
  load        the loader role's credentials (sts:AssumeRole) generate and
              load a date into the stack's buckets with
              --s3-sse aws:kms --s3-kms-key-id <the stack's KmsKeyArn>; then
              the CronJob's way: no static keys, a web identity token and the
              IRSA role's ARN (what EKS injects), through shoplake's AWS chain
              and LocalStack's STS; every object carries the stack's key.

LocalStack's community edition does not enforce IAM or bucket policies, and
its CloudFormation does not apply a bucket's BucketEncryption,
PublicAccessBlockConfiguration or LifecycleConfiguration: the role
boundaries are proven on MinIO (test_roles_minio.py); here the documents and
the encryption shoplake asks for are checked.
"""

import base64
import json
import os
import re
import time
from pathlib import Path

import pytest
import render
from conftest import TEMPLATE, Creds, encryption_of, new_id

DATES = ["2019-04-01", "2019-04-02"]
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
pytestmark = pytest.mark.usefixtures("sse")


@pytest.fixture(scope="module")
def template():
    return render.cfn_loader()(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def stack(localstack):
    cfn = localstack.client("cloudformation")
    name = f"shoplake-{new_id()}"
    account = localstack.client("sts").get_caller_identity()["Account"]
    params = {
        "ExportsBucketName": f"{name}-exports",
        "LakeBucketName": f"{name}-lake",
        "EksOidcProviderArn": f"arn:aws:iam::{account}:oidc-provider/{ISSUER}",
        "GlueDatabase": f"sectest_{new_id()}",  # not the default: the parameter reaches the policy
    }
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
    )
    deadline = time.monotonic() + 180
    while (status := cfn.describe_stacks(StackName=name)["Stacks"][0])["StackStatus"].endswith("IN_PROGRESS"):
        assert time.monotonic() < deadline, "the stack did not finish in 180 s"
        time.sleep(1)
    failed = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
        for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
        if e["ResourceStatus"].endswith("FAILED")
    ]
    assert status["StackStatus"] == "CREATE_COMPLETE", f"{status['StackStatus']}: {failed}"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in status["Outputs"]}
    values = {
        "ExportsBucket": params["ExportsBucketName"],
        "ExportsPrefix": "daily",
        "LakeBucket": params["LakeBucketName"],
        "LakePrefix": "lake",
        "KmsKeyArn": outputs["KmsKeyArn"],
        "AWS::Region": "us-east-1",
        "AWS::AccountId": account,
        "GlueDatabase": params["GlueDatabase"],
    }
    return {"name": name, "params": params, "outputs": outputs, "values": values, "account": account}


def test_template_promises(template):
    assert render.cfn_differences(TEMPLATE) == []
    res = template["Resources"]
    key_arn = {"Fn::GetAtt": ["DataKey", "Arn"]}
    for bucket in ("ExportsBucket", "LakeBucket"):
        props = res[bucket]["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}, bucket
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}, bucket
        assert len(props["PublicAccessBlockConfiguration"]) == 4, bucket
        assert res[bucket]["DeletionPolicy"] == "Retain", bucket
    assert res["ExportsBucket"]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    for policy in ("ExportsBucketPolicy", "LakeBucketPolicy"):
        (tls,) = [s for s in res[policy]["Properties"]["PolicyDocument"]["Statement"] if s["Sid"] == "DenyInsecureTransport"]
        assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, policy
    assert res["DataKey"]["Properties"]["EnableKeyRotation"] is True
    assert res["DataKey"]["DeletionPolicy"] == "Retain"
    irsa = res["IngestServiceAccountRole"]["Properties"]
    assert irsa["ManagedPolicyArns"] == [{"Ref": "LoaderPolicy"}]
    # Glue: the loader registers (five actions, no wildcard) in one database; no other role touches Glue.
    (glue,) = render.glue_policy("eu-west-1", "123456789012", "shop_db")["Statement"]
    assert glue["Effect"] == "Allow" and "Condition" not in glue
    assert sorted(glue["Action"]) == sorted(f"glue:{a}" for a in ("GetDatabase", "CreateDatabase", "GetTable", "CreateTable", "UpdateTable"))
    assert glue["Resource"] == [
        "arn:aws:glue:eu-west-1:123456789012:catalog",
        "arn:aws:glue:eu-west-1:123456789012:database/shop_db",
        "arn:aws:glue:eu-west-1:123456789012:table/shop_db/*",
    ]
    for name in ("auditor", "maintainer", "lake-bucket", "exports-bucket"):
        assert not any(a.startswith("glue:") for s in render.load(name)["Statement"] for a in render.actions(s)), name
    glue_db = template["Parameters"]["GlueDatabase"]
    assert re.fullmatch(glue_db["AllowedPattern"], glue_db["Default"])
    assert not re.fullmatch(glue_db["AllowedPattern"], "*"), "a wildcard database would grant every database"


def test_stack_deploys_what_the_policies_say(localstack, stack):
    values, outputs = stack["values"], stack["outputs"]
    kms, s3, iam = localstack.client("kms"), localstack.s3, localstack.client("iam")
    key = kms.describe_key(KeyId=outputs["KmsKeyArn"])["KeyMetadata"]
    assert key["Enabled"] and key["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases(KeyId=key["KeyId"])["Aliases"]}
    assert aliases.get(outputs["KmsKeyAlias"]) == key["KeyId"], aliases
    assert s3.get_bucket_versioning(Bucket=values["ExportsBucket"]).get("Status") == "Enabled"
    for bucket, doc in ((values["ExportsBucket"], "exports-bucket"), (values["LakeBucket"], "lake-bucket")):
        assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == render.document(doc, values), bucket

    def attached(role_arn):
        role = iam.get_role(RoleName=role_arn.rsplit("/", 1)[1])["Role"]
        docs = []
        for p in iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]:
            version = iam.get_policy(PolicyArn=p["PolicyArn"])["Policy"]["DefaultVersionId"]
            docs.append(iam.get_policy_version(PolicyArn=p["PolicyArn"], VersionId=version)["PolicyVersion"]["Document"])
        trust = role["AssumeRolePolicyDocument"]
        return docs, json.loads(trust) if isinstance(trust, str) else trust

    account_root = f"arn:aws:iam::{stack['account']}:root"
    for role in ("loader", "auditor", "maintainer"):
        docs, trust = attached(outputs[f"{role.capitalize()}RoleArn"])
        assert docs == [render.document(role, values)], role
        (st,) = trust["Statement"]
        assert (st["Principal"], st["Action"]) == ({"AWS": account_root}, "sts:AssumeRole"), trust
    docs, trust = attached(outputs["IngestServiceAccountRoleArn"])
    assert docs == [render.document("loader", values)]
    (st,) = trust["Statement"]
    assert st["Principal"] == {"Federated": stack["params"]["EksOidcProviderArn"]}
    assert st["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert st["Condition"] == {"StringEquals": {
        f"{ISSUER}:sub": "system:serviceaccount:data:shoplake", f"{ISSUER}:aud": "sts.amazonaws.com"}}


def web_identity_token(path):
    """A token shaped like the one EKS projects (LocalStack's STS does not verify its signature)."""
    def part(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = {"iss": f"https://{ISSUER}", "sub": "system:serviceaccount:data:shoplake", "aud": "sts.amazonaws.com", "exp": 4102444800}
    path.write_text(f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl")
    return path


def test_load_through_the_stack_with_its_key(localstack, shoplake, stack):
    outputs = stack["outputs"]
    key = outputs["KmsKeyArn"]
    flags = ["--s3-sse", "aws:kms", "--s3-kms-key-id", key]
    sts = localstack.client("sts")
    c = sts.assume_role(RoleArn=outputs["LoaderRoleArn"], RoleSessionName="security-test")["Credentials"]
    loader = Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    r = shoplake(localstack.endpoint, loader, *flags, "generate", "--from", DATES[0], "--to", DATES[-1], "--rows", 500, "--out", outputs["SourceUri"])
    assert r.rc == 0, str(r)
    r = shoplake(localstack.endpoint, loader, *flags, "ingest", "--date", DATES[0], "--source", outputs["SourceUri"], "--lake", outputs["LakeUri"], "--format", "json")
    assert r.rc == 0, str(r)
    loaded = {DATES[0]: r.json()["rows_valid"]}

    # The CronJob: EKS injects AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, no keys.
    token = web_identity_token(shoplake.workdir / f"irsa-token-{new_id()}")
    log = Path(os.environ["SECTEST_LOCALSTACK_LOG"])
    calls_before = log.read_text().count("sts.AssumeRoleWithWebIdentity => 200")
    irsa = {
        "AWS_ROLE_ARN": outputs["IngestServiceAccountRoleArn"],
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
        "AWS_ROLE_SESSION_NAME": "shoplake-ingest",
        "SHOPLAKE_S3_SSE": "aws:kms",
        "SHOPLAKE_S3_KMS_KEY_ID": key,
    }
    r = shoplake(localstack.endpoint, None, "ingest", "--date", DATES[1], "--source", outputs["SourceUri"], "--lake", outputs["LakeUri"], "--format", "json", env=irsa)
    assert r.rc == 0, str(r)
    loaded[DATES[1]] = r.json()["rows_valid"]
    assert log.read_text().count("sts.AssumeRoleWithWebIdentity => 200") > calls_before, "the load did not use web identity"

    for bucket, prefix in ((stack["values"]["ExportsBucket"], "daily/"), (stack["values"]["LakeBucket"], "lake/")):
        found = encryption_of(localstack.s3, bucket, prefix)
        assert found, f"nothing under s3://{bucket}/{prefix}"
        wrong = {k: v[:2] for k, v in found.items() if v[:2] != ("aws:kms", key)}
        assert not wrong, f"objects not encrypted with the stack's key {key}: {wrong}"

    c = sts.assume_role(RoleArn=outputs["AuditorRoleArn"], RoleSessionName="security-test")["Credentials"]
    auditor = Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    sql = "SELECT CAST(export_date AS VARCHAR) AS d, count(*) AS n FROM shopify_configuration GROUP BY export_date ORDER BY d"
    r = shoplake(localstack.endpoint, auditor, "query", "--lake", outputs["LakeUri"], "--sql", sql, "--format", "csv")
    assert r.rc == 0, str(r)
    assert dict(line.split(",") for line in r.out.splitlines()[1:]) == {d: str(n) for d, n in loaded.items()}
