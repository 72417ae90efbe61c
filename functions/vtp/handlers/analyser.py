"""One item of the analysis Map (a fitted ladder): a few frames of one chunk, trial-encoded at
every candidate size and rate factor and scored; the trial points go beside job.json."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp.aws.pipeline import analyse_chunk
from vtp.handlers.common import buckets, invocation, job_store, logger, metrics, tracer


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    chunk = event["chunk"]
    logger.append_keys(job_id=event["job_id"], chunk_index=chunk["index"])
    result = analyse_chunk(
        event["job_id"], chunk, buckets=buckets(), store=job_store(),
        attempt=int(event.get("attempt", 0)), invocation=invocation(context),
        dispatched_at=event.get("entered_at"),
    )
    metrics.add_metric(name="ChunkAnalysisSeconds", unit=MetricUnit.Seconds, value=result["wall_s"])
    logger.info("chunk analysed", extra={"result": result})
    return result
