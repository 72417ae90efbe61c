"""Every few minutes (EventBridge schedule): the RUNNING jobs, how old, and repairs.

Metrics (namespace vtp): ``JobsRunning``, ``JobsOverdue`` (RUNNING longer than
VTP_OVERDUE_AFTER_S: alarmed), ``OldestRunningJobAgeSeconds``, ``JobsRepaired``. A job
still RUNNING although its execution ended FAILED, TIMED_OUT or ABORTED more than
VTP_REPAIR_AFTER_S ago (the execution's status event was lost, or the failure function
gave up) is handed to the failure function again, forced. A RUNNING job without an
execution is an upload whose splitter deliveries did not finish: its message is in the
uploads queue (retrying) or the dead-letter queue (alarmed); the watchdog only counts it.
"""

from __future__ import annotations

import os
import time

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from vtp import contract
from vtp.aws.pipeline import check_running_jobs
from vtp.handlers.common import describe_execution, invoke_failure_function, job_store, logger, metrics, tracer

DEFAULT_OVERDUE_AFTER_MINUTES = 120
DEFAULT_REPAIR_AFTER_S = 15 * 60


def repair(described: dict) -> None:
    detail = {key: described.get(key) for key in ("executionArn", "stateMachineArn", "name", "status", "input", "error", "cause")}
    detail["stopDate"] = str(described.get("stopDate") or "")
    invoke_failure_function({"source": contract.WATCHDOG_EVENT_SOURCE, "detail-type": contract.STATES_STATUS_CHANGE,
                             "detail": detail})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    report = check_running_jobs(
        job_store(), now=time.time(),
        overdue_after_s=60 * float(os.environ.get(contract.ENV_OVERDUE_AFTER_MINUTES) or DEFAULT_OVERDUE_AFTER_MINUTES),
        repair_after_s=float(os.environ.get(contract.ENV_REPAIR_AFTER_S) or DEFAULT_REPAIR_AFTER_S),
        describe_execution=describe_execution, repair=repair,
    )
    metrics.add_metric(name=contract.METRIC_JOBS_RUNNING, unit=MetricUnit.Count, value=report["running"])
    metrics.add_metric(name=contract.METRIC_JOBS_OVERDUE, unit=MetricUnit.Count, value=len(report["overdue"]))
    metrics.add_metric(name=contract.METRIC_OLDEST_RUNNING_S, unit=MetricUnit.Seconds, value=report["oldest_s"])
    metrics.add_metric(name=contract.METRIC_JOBS_REPAIRED, unit=MetricUnit.Count, value=len(report["repaired"]))
    if report["overdue"] or report["repaired"]:
        logger.warning("jobs need attention", extra={"report": report})
    return report
