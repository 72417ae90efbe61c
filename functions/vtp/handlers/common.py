"""What every handler shares: powertools logger/tracer/metrics and the AWS clients."""

from __future__ import annotations

import os
from functools import cache

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer

from vtp.aws.jobstore import DynamoJobStore
from vtp.aws.pipeline import Buckets, SourceReader
from vtp.aws.storage import S3Store, presigner

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def buckets() -> Buckets:
    s3 = boto3.client("s3")
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

