"""After the analysis Map: the chunks' trial points -> the fitted rungs and each chunk's rate
factors, written into job.json for the encoders; the job moves on to stage encode."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp.aws.pipeline import fit_ladder
from vtp.handlers.common import buckets, invocation, job_store, logger, metrics, tracer


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    logger.append_keys(job_id=event["job_id"])
    result = fit_ladder(event["job_id"], buckets=buckets(), store=job_store(), invocation=invocation(context))
    metrics.add_metric(name="LadderRungs", unit=MetricUnit.Count, value=len(result["renditions"]))
    logger.info("ladder fitted", extra={"result": result})
    return result
