#!/usr/bin/env bash
# LocalStack "ready" init hook: creates the S3 buckets shoplake's integration tests use.
# Works when mounted at /etc/localstack/init/ready.d/ in a LocalStack container (uses awslocal)
# and when run by localstack/services.sh against a host-process LocalStack or MinIO
# (uses a python that has boto3: $SHOPLAKE_PYTHON, else python3).
# Idempotent: a bucket that already exists is left alone.
# Env: AWS_ENDPOINT_URL (default http://127.0.0.1:4566), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
# (default test/test), AWS_DEFAULT_REGION (default us-east-1), SHOPLAKE_BUCKETS (default "raw lake lake-versioned").
# A bucket whose name ends in -versioned gets versioning on (erase --purge must reach noncurrent versions).
set -euo pipefail

export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
read -ra BUCKETS <<<"${SHOPLAKE_BUCKETS:-raw lake lake-versioned}"

has_boto3() { [ -n "$1" ] && command -v "$1" >/dev/null 2>&1 && "$1" -c 'import boto3' 2>/dev/null; }

PY=""
if has_boto3 "${SHOPLAKE_PYTHON:-}"; then PY=$SHOPLAKE_PYTHON
elif ! command -v awslocal >/dev/null 2>&1 && has_boto3 python3; then PY=python3
fi

if [ -n "$PY" ]; then
  AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:4566} "$PY" - "${BUCKETS[@]}" <<'EOF'
import os, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}))
for bucket in sys.argv[1:]:
    try:
        s3.head_bucket(Bucket=bucket)
        print(f"bucket {bucket} already exists")
    except ClientError:
        try:
            s3.create_bucket(Bucket=bucket)
            print(f"created bucket {bucket}")
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
            print(f"bucket {bucket} already exists")
    if bucket.endswith("-versioned"):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
EOF
elif command -v awslocal >/dev/null 2>&1; then
  # Inside the LocalStack container. awslocal ignores AWS_ENDPOINT_URL; use plain aws for an override.
  export DISABLE_DEPRECATION_NOTICE=1
  cli=(awslocal)
  if [ -n "${AWS_ENDPOINT_URL:-}" ] && command -v aws >/dev/null 2>&1; then
    cli=(aws --endpoint-url "$AWS_ENDPOINT_URL")
  fi
  for b in "${BUCKETS[@]}"; do
    if "${cli[@]}" s3api head-bucket --bucket "$b" >/dev/null 2>&1; then
      echo "bucket $b already exists"
    else
      "${cli[@]}" s3api create-bucket --bucket "$b" >/dev/null && echo "created bucket $b"
    fi
    case $b in *-versioned)
      "${cli[@]}" s3api put-bucket-versioning --bucket "$b" --versioning-configuration Status=Enabled ;;
    esac
  done
else
  echo "10-create-buckets.sh: need awslocal, or a python with boto3 (set SHOPLAKE_PYTHON)" >&2
  exit 1
fi
