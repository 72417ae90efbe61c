"""The audio branch beside the Map: the whole file's audio, once."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp.aws.pipeline import encode_audio
from vtp.handlers.common import buckets, logger, metrics, tracer


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    logger.append_keys(job_id=event["job_id"])
    result = encode_audio(event["job_id"], buckets=buckets())
    logger.info("audio encoded", extra={"result": result})
    return result
