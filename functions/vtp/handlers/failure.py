"""The workflow's catch path: the job is FAILED with its cause, nothing half-published."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp.aws.pipeline import error_from_workflow, fail_job
from vtp.handlers.common import buckets, job_store, logger, metrics, tracer


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    job_id = event["job_id"]
    logger.append_keys(job_id=job_id)
    error = error_from_workflow(event.get("error"))
    source = event.get("source", {})
    result = fail_job(
        job_id, f"s3://{source.get('bucket', '')}/{source.get('key', '')}", error, buckets=buckets(), store=job_store(),
        stage=event.get("stage", "workflow"),
    )
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    logger.error("job failed", extra={"error": error.to_dict()})
    return result
