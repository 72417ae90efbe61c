"""After the Map: the chunks' facts -> playlists, MPD, thumbnail track, manifest.json last, COMPLETE."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp.aws.pipeline import merge_and_publish
from vtp.handlers.common import buckets, invocation, job_store, logger, metrics, tracer


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    logger.append_keys(job_id=event["job_id"])
    result = merge_and_publish(event["job_id"], buckets=buckets(), store=job_store(), invocation=invocation(context))
    metrics.add_metric(name="JobsComplete", unit=MetricUnit.Count, value=1)
    logger.info("job published", extra={"result": result})
    return result
