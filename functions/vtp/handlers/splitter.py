"""S3 ObjectCreated -> probe, validate, plan, cut pieces, start the workflow."""

from __future__ import annotations

import json
import os
from functools import cache

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from vtp.aws.pipeline import sources_in_event, start_job
from vtp.core.config import config_from_environment
from vtp.handlers.common import buckets, job_store, logger, metrics, tracer


@cache
def _stepfunctions():
    return boto3.client("stepfunctions")


def start_execution(*, name: str, execution_input: dict) -> None:
    """Named after the job: a second start of the same job cannot make a second run."""
    try:
        _stepfunctions().start_execution(
            stateMachineArn=os.environ["STATE_MACHINE_ARN"], name=name, input=json.dumps(execution_input)
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
        logger.info("execution already started", extra={"job_id": name})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    results = []
    for source in sources_in_event(event):
        logger.append_keys(job_id=source.job_id)
        logger.info("new source", extra={"source": source.uri, "bytes": source.size})
        result = start_job(
            source,
            buckets=buckets(),
            store=job_store(),
            start_execution=start_execution,
            config=config_from_environment(dict(os.environ)),
            logger=logger,
        )
        metrics.add_metric(name=f"Jobs{result['status'].title()}", unit=MetricUnit.Count, value=1)
        logger.info("splitter done", extra={"result": result})
        results.append(result)
    return {"jobs": results}
