"""One Distributed Map item: encode one chunk to every rung; or, an item of the rework Map (a
fitted ladder: the event's ``rework`` field), encode that chunk's missed rungs again."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp import contract
from vtp.aws.pipeline import encode_chunk, rework_chunk
from vtp.handlers.common import buckets, invocation, job_store, logger, metrics, tracer


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    chunk = event["chunk"]
    logger.append_keys(job_id=event["job_id"], chunk_index=chunk["index"])
    if event.get(contract.REWORK_FIELD):
        result = rework_chunk(
            event["job_id"], chunk, event[contract.REWORK_FIELD], buckets=buckets(), store=job_store(),
            attempt=int(event.get("attempt", 0)), invocation=invocation(context),
        )
        metrics.add_metric(name="ChunkReworkSeconds", unit=MetricUnit.Seconds, value=result["wall_s"])
        logger.info("chunk reworked", extra={"result": result})
        return result
    result = encode_chunk(
        event["job_id"], chunk, buckets=buckets(), store=job_store(),
        attempt=int(event.get("attempt", 0)), invocation=invocation(context),
        dispatched_at=event.get("entered_at"),
    )
    metrics.add_metric(name="ChunkEncodeSeconds", unit=MetricUnit.Seconds, value=result["wall_s"])
    logger.info("chunk encoded", extra={"result": result})
    return result
