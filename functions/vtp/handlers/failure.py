"""The workflow's catch path: the job is FAILED with its cause, nothing half-published."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp.aws.pipeline import fail_job, failure_reason
from vtp.handlers.common import buckets, job_store, logger, metrics, tracer


def failed_stage(event: dict) -> str:
    """The stage the workflow caught the error in, named as the local runner names it: the
    Map's result is in the state only once it succeeded, so then the merge failed."""
    return "merge" if event.get("encode") else "encode"


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    job_id = event["job_id"]
    logger.append_keys(job_id=job_id)
    store = job_store()
    error = failure_reason(event.get("error"), job_id, store)
    source = event.get("source", {})
    result = fail_job(
        job_id, f"s3://{source.get('bucket', '')}/{source.get('key', '')}", error, buckets=buckets(), store=store,
        stage=event.get("stage") or failed_stage(event),
    )
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    logger.error("job failed", extra={"error": error.to_dict()})
    return result
