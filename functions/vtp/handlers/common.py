"""What every handler shares: powertools logger/tracer/metrics and the AWS clients."""

from __future__ import annotations

import os
from functools import cache

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from botocore.config import Config

from vtp.aws.jobstore import DynamoJobStore
from vtp.aws.pipeline import Buckets, SourceReader
from vtp.aws.storage import S3Store, presigner

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def s3_client():
    """S3 with SigV4 for presigned URLs too: unless told, botocore presigns with the legacy
    SigV2 wherever the region still takes it (us-east-1 among them), and SigV2 does not sign
    the If-Match header that pins an unversioned upload. On AWS the bucket's regional host
    (the global one answers for a bucket created within the day with a redirect, which a
    SigV4 signature does not survive); a custom endpoint (LocalStack, moto) as it is given."""
    custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client("s3", config=Config(signature_version="s3v4", s3={} if custom else {"addressing_style": "virtual"}))


@cache
def buckets() -> Buckets:
    s3 = s3_client()
    work_bucket = os.environ["WORK_BUCKET"]
    return Buckets(
        input=SourceReader(presigner(s3)),
        work=S3Store(work_bucket, s3),
        output=S3Store(os.environ["OUTPUT_BUCKET"], s3),
        work_bucket_name=work_bucket,
    )


@cache
def job_store() -> DynamoJobStore:
    return DynamoJobStore(os.environ["JOBS_TABLE"])

