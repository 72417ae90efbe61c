"""The failure path: the job is FAILED with its cause, nothing half-published, once.

Three callers, one function (each event shape below), all idempotent together:

* the workflow's catch (MarkJobFailed): the execution's state with ``error`` {Error, Cause};
* Step Functions' "Execution Status Change" event (EventBridge rule: FAILED, TIMED_OUT,
  ABORTED of this state machine), or the watchdog's copy of it: the execution ended
  without (or after) the workflow's own failure path;
* the splitter: an input it refused (``rejected`` {code, message}); the splitter, which
  parses untrusted media, cannot write the output bucket, so the FAILED manifest is
  written here.

The job becomes FAILED once (a conditional write); that call removes the partial output,
writes the FAILED manifest and sends ``TranscodeJobFailed`` (source ``vtp.pipeline``) to
the default event bus, and counts ``JobsFailed``.
"""

from __future__ import annotations

import json
import os

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp import contract
from vtp.aws.pipeline import fail_execution, fail_job, failure_reason
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import Stages
from vtp.handlers.common import buckets, client, job_store, logger, metrics, tracer


def failed_stage(event: dict) -> str:
    """The stage the workflow caught the error in, named as the local runner names it: the
    Map's result is in the state only once it succeeded, so then the merge failed."""
    return "merge" if event.get("encode") else "encode"


def publish_failed(detail: dict) -> None:
    """TranscodeJobFailed on the pipeline's bus (the default bus), beside TranscodeJobCompleted."""
    detail = {**detail, "output_bucket": os.environ.get(contract.ENV_OUTPUT_BUCKET, "")}
    response = client("events").put_events(Entries=[{
        "Source": contract.EVENT_SOURCE, "DetailType": contract.EVENT_JOB_FAILED,
        "Detail": json.dumps(detail), "EventBusName": os.environ.get(contract.ENV_EVENT_BUS) or contract.DEFAULT_EVENT_BUS,
    }])
    if response.get("FailedEntryCount"):
        raise RuntimeError(f"TranscodeJobFailed was not accepted: {response.get('Entries')}")


def _source_uri(event: dict) -> str:
    source = event.get("source") or {}
    return f"s3://{source.get('bucket', '')}/{source.get('key', '')}"


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    store = job_store()
    if event.get("detail-type") == contract.STATES_STATUS_CHANGE:
        detail = event.get("detail") or {}
        logger.append_keys(execution=detail.get("name"))
        result = fail_execution(
            detail, buckets=buckets(), store=store, publish=publish_failed,
            forced=event.get("source") == contract.WATCHDOG_EVENT_SOURCE,
        )
    elif "rejected" in event:
        logger.append_keys(job_id=event["job_id"])
        rejected = event["rejected"]
        figures = event.get("figures")
        result = fail_job(
            event["job_id"], _source_uri(event), PipelineError(ErrorCode(rejected["code"]), rejected["message"]),
            buckets=buckets(), store=store, stage=event.get("stage") or "split",
            figures=Stages.from_dict(figures) if figures else None, when="running", publish=publish_failed,
        )
    else:
        job_id = event["job_id"]
        logger.append_keys(job_id=job_id)
        error = failure_reason(event.get("error"), job_id, store)
        result = fail_job(
            job_id, _source_uri(event), error, buckets=buckets(), store=store,
            stage=event.get("stage") or failed_stage(event), publish=publish_failed,
        )
    if result.get("changed", True):
        metrics.add_metric(name=contract.METRIC_JOBS_FAILED, unit=MetricUnit.Count, value=1)
        logger.error("job failed", extra={"result": result})
    else:
        logger.info("nothing to fail", extra={"result": result})
    return result
