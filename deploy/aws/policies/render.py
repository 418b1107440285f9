#!/usr/bin/env python3
"""Renders shoplake's IAM and bucket policies for given buckets, and checks
that the CloudFormation stack carries the same statements.

The policies live once, as JSON, beside this file: loader.json, auditor.json,
maintainer.json (identity policies of the three roles) and lake-bucket.json,
exports-bucket.json (bucket policies). Their placeholders use CloudFormation's
Fn::Sub syntax, so the stack (../shoplake.cfn.yaml) writes the very same
strings under !Sub:

    ${ExportsBucket} ${ExportsPrefix} ${LakeBucket} ${LakePrefix}
    ${KmsKeyArn}  (the stack's ${DataKey.Arn})   ${AWS::Region}
    ${GlueDatabase}  ${AWS::AccountId}  (the loader's RegisterInGlue statement)

Usage:
    render.py policy NAME --exports-bucket B --exports-prefix P --lake-bucket B
        --lake-prefix P (--kms-key-arn ARN --region R | --no-kms)
        (--glue-database DB --account-id ID --region R | --no-glue)
        [--as-user-policy] [--without SID ...]
    render.py check-cfn TEMPLATE

`policy` prints the JSON document with every placeholder replaced (an
unknown or unreplaced placeholder is an error). --no-kms drops the statements
that grant AWS KMS actions (MinIO's built-in KMS has no IAM actions of that
kind); --no-glue drops those that grant AWS Glue actions (MinIO has no Glue
and refuses a policy naming Glue ARNs); --as-user-policy drops
"Principal" so a bucket policy's statements can be attached to a user (MinIO
applies bucket policies to anonymous requests only); --without drops the
statements with those Sids. A Glue database is a Glue name (lowercase
letters, digits, underscores: never a wildcard, so the grant is one
database), an account id 12 digits.

The loader's Glue statement alone, for a region, account and database
(what a test that registers tables grants):

    glue_policy(region, account_id, database)
    # = document("loader", {"AWS::Region": region, "AWS::AccountId": account_id,
    #                       "GlueDatabase": database}, only={"RegisterInGlue"})

`check-cfn` exits 1 unless every role's managed policy and every bucket
policy in the template equals its JSON file statement for statement
(`make lint`). The tests (deploy/aws/tests/) import document(), glue_policy()
and cfn_differences(), so what they grant on MinIO and compare on LocalStack is
this very rendering. Standard library only, except PyYAML for check-cfn.
"""

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9:.]+)\}")
# Logical ids in the template -> the JSON file their document must equal.
CFN_DOCUMENTS = {
    "LoaderPolicy": "loader",
    "AuditorPolicy": "auditor",
    "MaintainerPolicy": "maintainer",
    "LakeBucketPolicy": "lake-bucket",
    "ExportsBucketPolicy": "exports-bucket",
}
# JSON placeholder -> the stack's Fn::Sub name for the same value.
CFN_NAMES = {"KmsKeyArn": "DataKey.Arn"}
# The loader's statement that registers the tables in AWS Glue.
GLUE_SID = "RegisterInGlue"
# What a value must look like; a database that is not a Glue name (say "*")
# would widen the grant beyond one database.
VALUE_PATTERNS = {
    "GlueDatabase": (re.compile(r"[a-z0-9_]{1,255}"), "a Glue name: lowercase letters, digits, underscores"),
    "AWS::AccountId": (re.compile(r"[0-9]{12}"), "12 digits"),
}


def load(name):
    path = HERE / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"render.py: no policy {name!r} ({path} does not exist)")
    return json.loads(path.read_text())


def substitute(node, values):
    """Replaces ${Name} in every string of node; an unknown name is an error."""
    if isinstance(node, dict):
        return {substitute(k, values): substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values) for v in node]
    if isinstance(node, str):

        def one(match):
            name = match.group(1)
            if name not in values:
                raise SystemExit(f"render.py: no value for ${{{name}}}")
            return values[name]

        return PLACEHOLDER.sub(one, node)
    return node


def actions(statement):
    found = statement.get("Action", [])
    return [found] if isinstance(found, str) else list(found)


def document(name, values, *, no_kms=False, no_glue=False, as_user_policy=False, without=(), only=None):
    """The policy NAME with its placeholders replaced by values (a dict).

    no_kms drops the statements granting kms: actions, no_glue those granting
    glue: actions, without those with the given Sids, only keeps only those
    Sids; as_user_policy drops Principal. Only the kept statements'
    placeholders need values.
    """
    doc = load(name)
    statements = doc["Statement"]
    for dropped, service in ((no_kms, "kms:"), (no_glue, "glue:")):
        if dropped:
            statements = [s for s in statements if not any(a.startswith(service) for a in actions(s))]
    sids = {s.get("Sid") for s in statements}
    unknown = (set(without) | set(only or ())) - sids
    if unknown:
        raise SystemExit(f"render.py: {name} has no statement {sorted(unknown)}")
    statements = [s for s in statements if s.get("Sid") not in without and (only is None or s.get("Sid") in only)]
    if as_user_policy:
        statements = [{k: v for k, v in s.items() if k != "Principal"} for s in statements]
    for key in ("ExportsPrefix", "LakePrefix"):
        if key in values:
            values = dict(values, **{key: values[key].strip("/")})
            if not values[key]:
                raise SystemExit(f"render.py: {key} must not be empty (the policies grant a prefix, never a whole bucket)")
    for key, (pattern, what) in VALUE_PATTERNS.items():
        if key in values and not pattern.fullmatch(values[key]):
            raise SystemExit(f"render.py: {key} {values[key]!r} is not {what}")
    return substitute(dict(doc, Statement=statements), values)


def glue_policy(region, account_id, database):
    """The loader's Glue statement alone (GLUE_SID), for this region, account and database."""
    values = {"AWS::Region": region, "AWS::AccountId": account_id, "GlueDatabase": database}
    return document("loader", values, only={GLUE_SID})


def render(args):
    values = {
        "ExportsBucket": args.exports_bucket,
        "ExportsPrefix": args.exports_prefix,
        "LakeBucket": args.lake_bucket,
        "LakePrefix": args.lake_prefix,
    }
    if args.kms_key_arn:
        values["KmsKeyArn"] = args.kms_key_arn
    if args.region:
        values["AWS::Region"] = args.region
    if args.glue_database:
        values["GlueDatabase"] = args.glue_database
    if args.account_id:
        values["AWS::AccountId"] = args.account_id
    has_glue = any(a.startswith("glue:") for s in load(args.name)["Statement"] for a in actions(s))
    if has_glue and not args.no_glue and not (args.glue_database and args.account_id and args.region):
        raise SystemExit(f"render.py: {args.name} grants Glue: give --glue-database, --account-id and --region, or --no-glue")
    doc = document(
        args.name,
        values,
        no_kms=args.no_kms,
        no_glue=args.no_glue,
        as_user_policy=args.as_user_policy,
        without=args.without,
    )
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def cfn_loader():
    import yaml  # only check-cfn needs PyYAML

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader, tag_suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if tag_suffix == "Ref":
            return {"Ref": value}
        if tag_suffix == "Condition":
            return {"Condition": value}
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{tag_suffix}": value}

    Loader.add_multi_constructor("!", intrinsic)
    return lambda text: yaml.load(text, Loader=Loader)  # a SafeLoader subclass


def unsub(node):
    """{"Fn::Sub": "s"} -> "s", everywhere: the template's form of a JSON string."""
    if isinstance(node, dict):
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return node["Fn::Sub"]
        return {k: unsub(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unsub(v) for v in node]
    return node


def cfn_differences(template_path):
    """What differs between the template's policies and the JSON files (empty: nothing)."""
    template = cfn_loader()(Path(template_path).read_text())
    resources = template.get("Resources", {})
    names = {k: f"${{{v}}}" for k, v in CFN_NAMES.items()}
    problems = []
    for logical_id, policy in CFN_DOCUMENTS.items():
        resource = resources.get(logical_id)
        if resource is None:
            problems.append(f"{logical_id}: missing from {template_path}")
            continue
        got = unsub(resource["Properties"]["PolicyDocument"])
        want = json.loads(PLACEHOLDER.sub(lambda m: names.get(m.group(1), m.group(0)), json.dumps(load(policy))))
        if got != want:
            problems.append(
                f"{logical_id} differs from policies/{policy}.json:\n"
                f"  template: {json.dumps(got, sort_keys=True)}\n  json:     {json.dumps(want, sort_keys=True)}"
            )
    # Every string in the template that names a placeholder must be under !Sub,
    # or CloudFormation would store the literal "${...}".

    def walk(node, in_sub=False):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, in_sub or k == "Fn::Sub")
        elif isinstance(node, list):
            for v in node:
                walk(v, in_sub)
        elif isinstance(node, str) and not in_sub and PLACEHOLDER.search(node):
            problems.append(f"{node!r} has a placeholder but is not under !Sub")

    walk(resources)
    return problems


def check_cfn(args):
    problems = cfn_differences(args.template)
    for problem in problems:
        print(f"check-cfn: {problem}")
    if not problems:
        print(f"check-cfn: the policies of {args.template} are policies/*.json ({', '.join(CFN_DOCUMENTS)})")
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("policy", help="print one policy with the placeholders replaced")
    p.add_argument("name", help="loader, auditor, maintainer, lake-bucket or exports-bucket")
    p.add_argument("--exports-bucket", required=True)
    p.add_argument("--exports-prefix", required=True)
    p.add_argument("--lake-bucket", required=True)
    p.add_argument("--lake-prefix", required=True)
    p.add_argument("--kms-key-arn")
    p.add_argument("--region", help="the AWS region (KMS and Glue statements)")
    p.add_argument("--glue-database", help="the loader's Glue database (shoplake --glue-database)")
    p.add_argument("--account-id", help="the AWS account of the Glue catalog (${AWS::AccountId})")
    p.add_argument("--no-kms", action="store_true", help="drop the statements granting kms: actions")
    p.add_argument("--no-glue", action="store_true", help="drop the statements granting glue: actions")
    p.add_argument("--as-user-policy", action="store_true", help="drop Principal (bucket policy -> user policy)")
    p.add_argument("--without", action="append", default=[], metavar="SID", help="drop this statement")
    c = sub.add_parser("check-cfn", help="the template's policies equal the JSON files")
    c.add_argument("template")
    args = parser.parse_args()
    if args.command == "policy":
        render(args)
        return 0
    return check_cfn(args)


if __name__ == "__main__":
    sys.exit(main())
