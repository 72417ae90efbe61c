"""The ladder function, two actions of a fitted ladder (no media, no ffmpeg):

* after the analysis Map (``FitLadder``): the chunks' trial points -> the fitted rungs and each
  chunk's rate factors, written into job.json for the encoders; the job moves on to stage encode;
* after the encode Map (``PlanRework``, event ``action`` plan_rework): the chunks' facts -> the
  chunk-rungs to encode again, written as the rework Map's items (rework_chunks.json)."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp import contract
from vtp.aws.pipeline import fit_ladder, plan_rework
from vtp.handlers.common import buckets, invocation, job_store, logger, metrics, tracer


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    logger.append_keys(job_id=event["job_id"])
    action = event.get(contract.ACTION_FIELD) or contract.ACTION_FIT_LADDER
    if action == contract.ACTION_PLAN_REWORK:
        result = plan_rework(event["job_id"], buckets=buckets(), store=job_store(), invocation=invocation(context))
        metrics.add_metric(name="ReworkChunkRungs", unit=MetricUnit.Count, value=result["chunk_rungs"])
        logger.info("rework planned", extra={"result": result})
        return result
    if action != contract.ACTION_FIT_LADDER:
        raise ValueError(f"unknown action {action!r}")
    result = fit_ladder(event["job_id"], buckets=buckets(), store=job_store(), invocation=invocation(context))
    metrics.add_metric(name="LadderRungs", unit=MetricUnit.Count, value=len(result["renditions"]))
    logger.info("ladder fitted", extra={"result": result})
    return result
