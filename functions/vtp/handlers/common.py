"""What every handler shares: powertools logger/tracer/metrics and the AWS clients.

Every client retries throttling and 5xx answers itself (botocore's "standard" mode:
exponential backoff with jitter, at most ``AWS_MAX_ATTEMPTS`` calls, a few seconds to about
a minute in all); what still fails is raised to the handler, which hands the work back to
its retry (the uploads queue, Lambda's async retries, the workflow's retriers).
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from botocore.config import Config

from vtp import contract
from vtp.aws.jobstore import DynamoJobStore
from vtp.aws.pipeline import Buckets, Invocation, SourceReader
from vtp.aws.storage import S3Store, presigner

logger = Logger()
tracer = Tracer()
metrics = Metrics()

def invocation(context: Any) -> Invocation:
    """This invocation, for the job's timeline and cost: request id, configured memory and
    whether it is a cold start (Powertools' logger knows, once inject_lambda_context ran)."""
    cold = logger.get_current_keys().get("cold_start")
    return Invocation(
        request_id=str(getattr(context, "aws_request_id", "") or ""),
        memory_mb=int(getattr(context, "memory_limit_in_mb", 0) or 0),
        cold_start=bool(cold) if cold is not None else None,
    )


AWS_MAX_ATTEMPTS = 8  # standard mode: backoff min(20 s, 2^n) with full jitter between calls


def client_config(**kwargs: Any) -> Config:
    return Config(retries={"mode": "standard", "max_attempts": AWS_MAX_ATTEMPTS}, **kwargs)


def s3_client():
    """S3 with SigV4 for presigned URLs too: unless told, botocore presigns with the legacy
    SigV2 wherever the region still takes it (us-east-1 among them), and SigV2 does not sign
    the If-Match header that pins an unversioned upload. On AWS the bucket's regional host
    (the global one answers for a bucket created within the day with a redirect, which a
    SigV4 signature does not survive); a custom endpoint (LocalStack, moto) as it is given."""
    custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client("s3", config=client_config(signature_version="s3v4", s3={} if custom else {"addressing_style": "virtual"}))


@cache
def client(service: str):
    """A cached client of ``service`` with the retry configuration above."""
    return boto3.client(service, config=client_config())


@cache
def buckets() -> Buckets:
    s3 = s3_client()
    work_bucket = os.environ[contract.ENV_WORK_BUCKET]
    return Buckets(
        input=SourceReader(presigner(s3)),
        work=S3Store(work_bucket, s3),
        output=S3Store(os.environ[contract.ENV_OUTPUT_BUCKET], s3),
        work_bucket_name=work_bucket,
    )


@cache
def job_store() -> DynamoJobStore:
    return DynamoJobStore(os.environ[contract.ENV_JOBS_TABLE], boto3.resource("dynamodb", config=client_config()))


def execution_arn(name: str) -> str:
    """The ARN of the execution ``name`` of the pipeline's state machine."""
    machine = os.environ[contract.ENV_STATE_MACHINE_ARN]
    prefix, _, machine_name = machine.rpartition(":stateMachine:")
    return f"{prefix}:execution:{machine_name}:{name}"


def describe_execution(name: str) -> dict[str, Any] | None:
    """DescribeExecution of ``name``, or None when there is no such execution."""
    sfn = client("stepfunctions")
    try:
        return sfn.describe_execution(executionArn=execution_arn(name))
    except sfn.exceptions.ExecutionDoesNotExist:
        return None


def invoke_failure_function(payload: dict[str, Any]) -> None:
    """Hand a job to the failure function, asynchronously (Lambda queues the event, retries
    it twice and sends it to the dead-letter queue after that)."""
    response = client("lambda").invoke(
        FunctionName=os.environ[contract.ENV_FAILURE_FUNCTION], InvocationType="Event",
        Payload=json.dumps(payload, default=str).encode(),
    )
    if response.get("StatusCode") != 202:
        raise RuntimeError(f"the failure function did not take the event: {response.get('StatusCode')}")
