"""Uploads queue (S3 ObjectCreated notifications) -> claim, probe, validate, plan, start the workflow.

The splitter runs from an SQS event source mapping (batch size 1): S3 sends each upload's
notification to the uploads queue; a delivery the splitter does not finish (it died, or
raised after botocore's own retries) comes back after the queue's visibility timeout, which
is longer than the claim's lease, so the retry takes the job over; after the queue's
maxReceiveCount deliveries it goes to the dead-letter queue (alarmed). A direct S3 event
(an asynchronous invoke) is taken too: then Lambda's own retries are the retry.

Outcomes per upload (vtp.aws.pipeline.start_job): STARTED, DUPLICATE, QUEUED (too many jobs
running: the upload goes back to the queue with a delay, it waits rather than fails),
FAILED (the input's fault: handed to the failure function, which writes the FAILED
manifest), IGNORED (not a job: a folder marker, S3's test event). While another delivery
holds the job's claim, this one is reported as a batch item failure: it comes back later.
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp import contract
from vtp.aws.jobstore import Claim
from vtp.aws.pipeline import ClaimHeld, ExecutionNameTaken, Invocation, SourceObject, sources_in_event, start_job
from vtp.core.config import config_from_environment
from vtp.handlers.common import (
    buckets, client, describe_execution, invocation, invoke_failure_function, job_store, logger, metrics, tracer,
)

DEFAULT_QUEUE_RETRY_DELAY_S = 60


class JobQueued(Exception):
    """Too many jobs run: a directly invoked splitter raises this so that Lambda retries later."""


def start_execution(*, name: str, execution_input: dict) -> None:
    """StartExecution named ``<job_id>-<attempt>``. The name already taken by a RUNNING
    execution is this attempt's own start (a retried call): started. Taken by a closed one
    (the job's record was deleted and the job runs again): ExecutionNameTaken."""
    sfn = client("stepfunctions")
    try:
        sfn.start_execution(
            stateMachineArn=os.environ[contract.ENV_STATE_MACHINE_ARN], name=name, input=json.dumps(execution_input)
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        described = describe_execution(name)
        if described and described["status"] == "RUNNING":
            logger.info("execution already started", extra={"execution": name})
            return
        raise ExecutionNameTaken(name) from None


def execution_status(name: str) -> str | None:
    described = describe_execution(name)
    return described["status"] if described else None


def admit() -> bool:
    """Whether another job may start: fewer RUNNING executions than VTP_MAX_RUNNING_JOBS
    (0: no cap). A soft cap: splitters that check at the same moment may each start one."""
    cap = int(os.environ.get(contract.ENV_MAX_RUNNING_JOBS) or 0)
    if cap <= 0:
        return True
    page = client("stepfunctions").list_executions(
        stateMachineArn=os.environ[contract.ENV_STATE_MACHINE_ARN], statusFilter="RUNNING", maxResults=cap
    )
    return len(page.get("executions", [])) < cap and not page.get("nextToken")


def requeue(body: str) -> int:
    """Send an upload's notification back to the uploads queue, to be delivered after a
    delay (with jitter, so that waiting uploads do not all come back at once)."""
    delay = int(os.environ.get(contract.ENV_QUEUE_RETRY_DELAY_S) or DEFAULT_QUEUE_RETRY_DELAY_S)
    delay = min(900, max(0, delay + random.randint(0, max(1, delay // 2))))
    client("sqs").send_message(QueueUrl=os.environ[contract.ENV_UPLOADS_QUEUE_URL], MessageBody=body, DelaySeconds=delay)
    return delay


# --- test-only faults (context vtp:test-fault-injection sets VTP_TEST_SPLITTER_FAULTS) ---------


def faults_enabled() -> bool:
    return bool(os.environ.get(contract.ENV_SPLITTER_FAULTS, "").strip())


def after_claim_fault(source: SourceObject):
    """The first attempt of an upload whose key names FAULT_DIE_AFTER_CLAIM dies right after
    its claim, as a splitter killed by its timeout or by running out of memory would."""

    def fault(claim: Claim) -> None:
        if faults_enabled() and contract.FAULT_DIE_AFTER_CLAIM in source.key and claim.attempt == 1:
            logger.warning("test fault: the splitter dies after its claim", extra={"attempt": claim.attempt})
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(137)

    return fault


_throttled: set[str] = set()


def _throttle_first_start(request, **kwargs):
    """botocore before-send hook: the first StartExecution of an upload whose key names
    FAULT_THROTTLE_START is answered with a ThrottlingException, as a busy Step Functions
    would; botocore's retries must carry the start through."""
    from botocore.awsrequest import AWSResponse

    try:
        body = json.loads(request.body)
        source_key = json.loads(body["input"])["source"]["key"]
    except (TypeError, ValueError, KeyError):
        return None
    name = body.get("name", "")
    if contract.FAULT_THROTTLE_START not in source_key or name in _throttled:
        return None
    _throttled.add(name)
    job_id = contract.job_id_of_execution(name)
    buckets().work.put_json(f"jobs/{job_id}/faults/start-throttled.json", {"execution": name})
    logger.warning("test fault: StartExecution throttled", extra={"execution": name})

    class Raw:
        def __init__(self, data: bytes):
            self.data = data

        def stream(self, **kwargs):
            yield self.data

    payload = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded (vtp test fault)"}).encode()
    return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, Raw(payload))


def _install_faults() -> None:
    if not faults_enabled():
        return
    sfn = client("stepfunctions")
    if not getattr(sfn, "_vtp_faults", False):
        sfn.meta.events.register("before-send.states.StartExecution", _throttle_first_start)
        sfn._vtp_faults = True


# --- the handler -----------------------------------------------------------------------------


def split(s3_event: dict[str, Any], called: Invocation = Invocation()) -> list[dict[str, Any]]:
    """Every upload of one S3 notification (usually one)."""
    results = []
    sources = sources_in_event(s3_event)
    if not sources:
        logger.info("not a job", extra={"event": str(s3_event)[:500]})
        return [{"status": "IGNORED"}]
    lease_s = float(os.environ.get(contract.ENV_LEASE_S) or 0) or None
    for source in sources:
        logger.append_keys(job_id=source.job_id)
        logger.info("new source", extra={"source": source.uri, "bytes": source.size, "version": source.version})
        result = start_job(
            source,
            buckets=buckets(),
            store=job_store(),
            start_execution=start_execution,
            reject=invoke_failure_function,
            execution_status=execution_status,
            admit=admit,
            after_claim=after_claim_fault(source),
            config=config_from_environment(dict(os.environ)),
            logger=logger,
            invocation=called,
            **({"lease_s": lease_s} if lease_s else {}),
        )
        # JobsStarted, JobsDuplicate, JobsQueued; a refused input is InputsRejected (the failure
        # function counts it in JobsFailed when it fails the job).
        name = contract.METRIC_INPUTS_REJECTED if result["status"] == "FAILED" else f"Jobs{result['status'].title()}"
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        logger.info("splitter done", extra={"result": result})
        results.append(result)
    return results


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    _install_faults()
    records = event.get("Records") or []
    if not records or records[0].get("eventSource") != "aws:sqs":
        # A direct S3 notification (asynchronous invoke): Lambda's retries are the retry.
        results = split(event, invocation(context))
        if any(result["status"] == "QUEUED" for result in results):
            raise JobQueued("too many jobs are running; Lambda's retry delivers the upload again")
        return {"jobs": results}
    results, failures = [], []
    for record in records:
        try:
            found = split(json.loads(record["body"]), invocation(context))
        except ClaimHeld as held:
            # Not lost: the message comes back after the queue's visibility timeout, when the
            # other delivery has started the job (DUPLICATE) or died (its lease is over).
            logger.info("claim held by another delivery", extra={"detail": str(held)})
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        except Exception:
            metrics.add_metric(name=contract.METRIC_SPLIT_RETRIED, unit=MetricUnit.Count, value=1)
            raise
        for result in found:
            if result["status"] == "QUEUED":
                delay = requeue(record["body"])
                logger.info("upload waits for a free slot", extra={"delay_s": delay})
        results.extend(found)
    return {"jobs": results, "batchItemFailures": failures}
