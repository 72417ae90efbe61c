"""The job store on DynamoDB: one item per job; every change of hands is a conditional write.

Besides the record every job store keeps (vtp.core.jobstore.JobRecord), an item holds:

* ``attempts``: how many splitter deliveries have claimed the job (1 on the first);
* ``lease_until``: epoch seconds until which the claim keeps other deliveries out;
* ``execution``: the name of the workflow execution that runs the job, once started;
* ``last_error``: the last failure a splitter attempt handed back for a retry ({code, message, at});
* ``publishing``: set by the merger before it writes the outputs (a stopped execution no
  longer fails the job then: the outputs are being completed);
* ``failure_published``: the failure path has written the FAILED manifest and sent the event;
* ``chunk_errors``: each failing encoder's reason, by chunk name.

A claim (``claim``) succeeds on a new job, or takes over a stale one: still RUNNING, no
execution recorded, lease expired (the splitter that held it died: Lambda killed it at its
timeout, so its lease, longer than the timeout, is over). Anything else is refused with the
reason: finished, started, or leased (a live splitter holds it: the caller retries later).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from vtp import contract
from vtp.core.jobstore import JobAlreadyExists, JobRecord, JobStatus
from vtp.core.manifest import now_iso

TABLE_ENV = contract.ENV_JOBS_TABLE
DEFAULT_STACK = contract.DEFAULT_STACK_NAME
RUNNING, COMPLETE, FAILED = str(JobStatus.RUNNING), str(JobStatus.COMPLETE), str(JobStatus.FAILED)


def stack_output(stack_name: str, output_key: str, client=None) -> str:
    client = client or boto3.client("cloudformation")
    try:
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        raise RuntimeError(f"cannot read stack {stack_name}: {error.response['Error']['Message']}") from None
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == output_key:
            return output["OutputValue"]
    raise RuntimeError(f"stack {stack_name} has no output {output_key}")


class ClaimRefused(Exception):
    """A delivery may not run the splitter for this job. ``reason``: "finished" (COMPLETE or
    FAILED), "started" (its execution runs it), "leased" (a live splitter holds the claim)."""

    def __init__(self, job_id: str, reason: str, item: dict[str, Any] | None):
        super().__init__(f"job {job_id} is {reason}")
        self.job_id, self.reason, self.item = job_id, reason, item or {}


class JobNotRunning(Exception):
    """The job is no longer RUNNING (it failed, or was stopped): late work must not publish."""


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    takeover: bool  # an earlier attempt claimed it and died


def _conditional_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


def refusal_reason(item: dict[str, Any] | None, now: float) -> str | None:
    """Why a claim of this item is refused, or None when it may be claimed."""
    if not item:
        return None
    if item.get("status") in (COMPLETE, FAILED):
        return "finished"
    if item.get("execution"):
        return "started"
    if float(item.get("lease_until", 0) or 0) >= now:
        return "leased"
    return None


class DynamoJobStore:
    def __init__(self, table_name: str, resource=None):
        self.table = (resource or boto3.resource("dynamodb")).Table(table_name)

    @classmethod
    def from_environment(cls, stack_name: str = DEFAULT_STACK) -> "DynamoJobStore":
        """The table named by JOBS_TABLE, else the JobsTableName output of the deployed stack."""
        name = os.environ.get(TABLE_ENV) or stack_output(stack_name, contract.OUTPUT_JOBS_TABLE)
        return cls(name)

    # --- plain records (the JobStore protocol) -------------------------------------------

    def create(self, record: JobRecord) -> None:
        record.created_at = record.created_at or now_iso()
        record.updated_at = record.created_at
        record.stage_times = {record.stage: record.created_at, **record.stage_times}
        item = {**_to_dynamo(record.to_dict()), "chunk_errors": {}, "attempts": 0}
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as error:
            if _conditional_failed(error):
                raise JobAlreadyExists(record.job_id) from None
            raise

    def update(self, job_id: str, **fields: Any) -> None:
        self._update(job_id, fields)

    def _update(
        self, job_id: str, fields: dict[str, Any], *, condition: str | None = None,
        names: dict[str, str] | None = None, values: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (), add: dict[str, Any] | None = None, return_values: str | None = None,
    ) -> dict[str, Any]:
        fields = {**fields, "updated_at": now_iso()}
        names = dict(names or {})
        values = dict(values or {})
        for i, name in enumerate(fields):
            names[f"#f{i}"] = name
        values.update({f":v{i}": _to_dynamo(value) for i, value in enumerate(fields.values())})
        assignments = [f"#f{i} = :v{i}" for i in range(len(fields))]
        if "stage" in fields:
            # stage_times is created with the record, so one stage's stamp can be set in place.
            names["#times"], names["#stage"] = "stage_times", str(fields["stage"])
            values[":stamp"] = fields["updated_at"]
            assignments.append("#times.#stage = :stamp")
        expression = "SET " + ", ".join(assignments)
        if add:
            for i, (name, value) in enumerate(add.items()):
                names[f"#a{i}"], values[f":a{i}"] = name, _to_dynamo(value)
            expression += " ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(add)))
        if remove:
            for i, name in enumerate(remove):
                names[f"#r{i}"] = name
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        kwargs: dict[str, Any] = {
            "Key": {"job_id": job_id}, "UpdateExpression": expression,
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values,
        }
        if condition:
            kwargs["ConditionExpression"] = condition
        if return_values:
            kwargs["ReturnValues"] = return_values
        return _from_dynamo(self.table.update_item(**kwargs).get("Attributes", {}))

    def enter_stage(self, job_id: str, stage: str) -> bool:
        """The record's stage, only while the job is RUNNING (a job that failed or was stopped
        meanwhile keeps its failed:<stage>). False where it was not running."""
        try:
            self._update(job_id, {"stage": stage}, condition="#st = :running", names={"#st": "status"},
                         values={":running": str(JobStatus.RUNNING)})
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            return False
        return True

    def get(self, job_id: str) -> JobRecord | None:
        item = self.item(job_id)
        return JobRecord.from_dict(item) if item else None

    def item(self, job_id: str) -> dict[str, Any] | None:
        """The whole item (attempts, execution, last_error ... included), or None."""
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return _from_dynamo(item) if item else None

    def recent(self, limit: int = 20) -> list[JobRecord]:
        """Newest first. A scan: the table holds one small item per job."""
        records = [JobRecord.from_dict(item) for item in self._scan()]
        return sorted(records, key=lambda r: r.created_at, reverse=True)[:limit]

    def _scan(self) -> list[dict[str, Any]]:
        return self._all_pages(self.table.scan)

    def _query(self, index: str, condition) -> list[dict[str, Any]]:
        return self._all_pages(self.table.query, IndexName=index, KeyConditionExpression=condition)

    @staticmethod
    def _all_pages(call, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a scan or query, page after page (the table resource has no paginator)."""
        items: list[dict] = []
        while True:
            page = call(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return [_from_dynamo(item) for item in items]
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def find(self, key_or_id: str, input_bucket: str | None = None) -> list[dict[str, Any]]:
        """The job with this id, else every job of this upload key (``s3://bucket/key``, or a
        key of ``input_bucket``), newest first: an overwritten key has one job per version."""
        item = self.item(key_or_id)
        if item:
            return [item]
        if key_or_id.startswith("s3://"):
            uri = key_or_id
        elif input_bucket:
            uri = f"s3://{input_bucket}/{key_or_id.lstrip('/')}"
        else:
            return []
        found = self._query(contract.INDEX_BY_INPUT, Key("input").eq(uri))
        return sorted(found, key=lambda item: item.get("created_at", ""), reverse=True)

    def running(self) -> list[dict[str, Any]]:
        """Every RUNNING job, oldest first (the by_status index)."""
        found = self._query(contract.INDEX_BY_STATUS, Key("status").eq(RUNNING))
        return sorted(found, key=lambda item: item.get("created_at", ""))

    # --- the splitter's claim ------------------------------------------------------------

    def claim(self, job_id: str, *, input: str, output: str, lease_s: float, now: float | None = None) -> Claim:
        """Claim the job for one splitter delivery (see the module docstring).

        One conditional UpdateItem makes a new record or takes over a stale one, counting
        the attempt; ClaimRefused says why not."""
        now = time.time() if now is None else now
        stamp = now_iso()
        try:
            item = self._claim_update(job_id, input, output, now, lease_s, stamp)
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            current = self.item(job_id)
            raise ClaimRefused(job_id, refusal_reason(current, now) or "leased", current) from None
        attempt = int(item.get("attempts", 1))
        return Claim(job_id, attempt, takeover=attempt > 1)

    def _claim_update(self, job_id: str, input: str, output: str, now: float, lease_s: float, stamp: str) -> dict:
        return _from_dynamo(self.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=(
                "SET #input = :input, #output = :output, #st = :running, #stage = :split, #lease = :until, "
                "updated_at = :stamp, created_at = if_not_exists(created_at, :stamp), "
                "stage_times = if_not_exists(stage_times, :times), chunk_errors = if_not_exists(chunk_errors, :empty), "
                "chunks_total = if_not_exists(chunks_total, :zero), chunks_done = if_not_exists(chunks_done, :zero), "
                "error_code = if_not_exists(error_code, :blank), error_message = if_not_exists(error_message, :blank), "
                "timings = if_not_exists(timings, :empty) "
                "ADD attempts :one"
            ),
            ConditionExpression=(
                "attribute_not_exists(job_id) OR (#st = :running AND attribute_not_exists(#exec) AND #lease < :now)"
            ),
            ExpressionAttributeNames={
                "#input": "input", "#output": "output", "#st": "status", "#stage": "stage",
                "#lease": "lease_until", "#exec": "execution",
            },
            ExpressionAttributeValues={
                ":input": input, ":output": output, ":running": RUNNING, ":split": "split",
                ":until": _epoch(now + lease_s), ":now": _epoch(now), ":stamp": stamp, ":times": {"split": stamp},
                ":empty": {}, ":zero": 0, ":blank": "", ":one": 1,
            },
            ReturnValues="ALL_NEW",
        )["Attributes"])

    def enqueue(self, job_id: str, *, input: str, output: str) -> bool:
        """A record for an upload that waits for a free slot (stage "queued", no lease, no
        attempt counted), so that `vtp status` shows it. False if the job has a record."""
        stamp = now_iso()
        try:
            self.table.put_item(
                Item={
                    "job_id": job_id, "input": input, "output": output, "status": RUNNING, "stage": "queued",
                    "created_at": stamp, "updated_at": stamp, "stage_times": {"queued": stamp},
                    "chunk_errors": {}, "chunks_total": 0, "chunks_done": 0, "error_code": "", "error_message": "",
                    "timings": {}, "attempts": 0, "lease_until": 0,
                },
                ConditionExpression="attribute_not_exists(job_id)",
            )
            return True
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise

    def next_attempt(self, job_id: str, attempt: int, *, lease_s: float, now: float | None = None) -> int:
        """Move a held claim on to the next attempt number (its execution name was taken by
        a closed execution: the record had been deleted and the job is run again)."""
        now = time.time() if now is None else now
        item = self._update(
            job_id, {"lease_until": _epoch(now + lease_s)},
            condition="#attempts = :mine AND attribute_not_exists(#exec)",
            names={"#attempts": "attempts", "#exec": "execution"}, values={":mine": attempt},
            return_values="ALL_NEW", add={"attempts": 1},
        )
        return int(item["attempts"])

    def started(self, job_id: str, attempt: int, execution: str, **fields: Any) -> None:
        """Record the execution that runs the job: from now on no delivery claims it."""
        self._update(
            job_id, {"execution": execution, **fields},
            condition="#attempts = :mine", names={"#attempts": "attempts"}, values={":mine": attempt},
        )

    def release(self, job_id: str, attempt: int, error: dict[str, str]) -> None:
        """Give up a claim after a failure that a retry may mend: the lease ends now (the next
        delivery takes over at once) and the error is kept for `vtp status`."""
        try:
            self._update(
                job_id, {"lease_until": 0, "last_error": {**error, "at": now_iso(), "attempt": attempt}},
                condition="#attempts = :mine AND attribute_not_exists(#exec)",
                names={"#attempts": "attempts", "#exec": "execution"}, values={":mine": attempt},
            )
        except ClientError as error_:
            if not _conditional_failed(error_):
                raise

    def record_error(self, job_id: str, error: dict[str, str]) -> None:
        self._update(job_id, {"last_error": {**error, "at": now_iso()}})

    # --- the workflow's side -------------------------------------------------------------

    def add_chunk_done(self, job_id: str, chunk: str | None = None) -> None:
        """Count a finished chunk atomically (encoders run in parallel); a failure recorded
        by an earlier attempt of the same chunk is cleared with it. JobNotRunning when the
        job is no longer RUNNING (failed or stopped meanwhile)."""
        count = {
            "Key": {"job_id": job_id},
            "UpdateExpression": "ADD chunks_done :one SET updated_at = :now",
            "ConditionExpression": "#st = :running",
            "ExpressionAttributeNames": {"#st": "status"},
            "ExpressionAttributeValues": {":one": 1, ":now": now_iso(), ":running": RUNNING},
        }
        try:
            if chunk is not None:
                try:
                    self.table.update_item(
                        **{**count, "UpdateExpression": count["UpdateExpression"] + " REMOVE chunk_errors.#chunk",
                           "ExpressionAttributeNames": {**count["ExpressionAttributeNames"], "#chunk": chunk}},
                    )
                    return
                except ClientError as error:
                    # A record made before chunk_errors existed (a job in flight across a deploy).
                    if error.response["Error"]["Code"] != "ValidationException":
                        raise
            self.table.update_item(**count)
        except ClientError as error:
            if _conditional_failed(error):
                raise JobNotRunning(job_id) from None
            raise

    def clear_chunk_error(self, job_id: str, chunk: str) -> None:
        """Remove a failure recorded by an earlier attempt of `chunk` (a rework's, say: no count).
        JobNotRunning when the job is no longer RUNNING (failed or stopped meanwhile)."""
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET updated_at = :now REMOVE chunk_errors.#chunk",
                ConditionExpression="#st = :running",
                ExpressionAttributeNames={"#st": "status", "#chunk": chunk},
                ExpressionAttributeValues={":now": now_iso(), ":running": RUNNING},
            )
        except ClientError as error:
            if _conditional_failed(error):
                raise JobNotRunning(job_id) from None
            if error.response["Error"]["Code"] != "ValidationException":  # a record without chunk_errors
                raise

    def set_chunk_error(self, job_id: str, chunk: str, error: dict[str, str]) -> None:
        """Record why a chunk's encoder failed ({"code", "message"}). A failed Distributed Map
        tells the workflow only that too many children failed, so the failure path reads these."""
        self.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET chunk_errors.#chunk = :error, updated_at = :now",
            ExpressionAttributeNames={"#chunk": chunk},
            ExpressionAttributeValues={":error": error, ":now": now_iso()},
        )

    def chunk_errors(self, job_id: str) -> dict[str, dict[str, str]]:
        """The failures recorded by encoders whose chunk has not succeeded since, by chunk name."""
        item = self.item(job_id) or {}
        return item.get("chunk_errors") or {}

    def begin_publishing(self, job_id: str) -> bool:
        """The merger's claim on the outputs: the job is RUNNING (or COMPLETE: a retry of a
        merger that finished) and from now on a stopped execution does not fail it. False
        when the job failed meanwhile: nothing may be published."""
        try:
            self._update(
                job_id, {"stage": "merge", "publishing": True},
                condition="#st IN (:running, :complete)", names={"#st": "status"},
                values={":running": RUNNING, ":complete": COMPLETE},
            )
            return True
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise

    # When a failure may fail a job (DynamoJobStore.fail ``when``):
    #   "not_failed": the workflow caught the error: any job not yet FAILED, even one the merger completed;
    #   "running": the splitter refused the input, or the watchdog repairs a job long after its execution
    #              ended: a RUNNING job;
    #   "running_unpublished": the execution ended outside the workflow's catch (stopped, timed out):
    #              a RUNNING job whose outputs the merger is not publishing.
    FAIL_CONDITIONS = {
        "not_failed": "attribute_exists(job_id) AND #st <> :failed",
        "running": "attribute_exists(job_id) AND #st = :running",
        "running_unpublished": "attribute_exists(job_id) AND #st = :running AND attribute_not_exists(#pub)",
    }

    def fail(self, job_id: str, *, stage: str, error: dict[str, str], when: str = "not_failed") -> bool:
        """Make the job FAILED, once, if ``when`` allows (see FAIL_CONDITIONS). True if this
        call made the change."""
        condition = self.FAIL_CONDITIONS[when]
        names = {"#st": "status"}
        if "#pub" in condition:
            names["#pub"] = "publishing"
        values = {":failed": FAILED} if ":failed" in condition else {":running": RUNNING}
        try:
            self._update(
                job_id,
                {"status": FAILED, "stage": f"failed:{stage}", "error_code": error["code"],
                 "error_message": error["message"][:1000], "failure_published": False},
                condition=condition, names=names, values=values,
            )
            return True
        except ClientError as error_:
            if _conditional_failed(error_):
                return False
            raise

    def failure_published(self, job_id: str) -> None:
        self._update(job_id, {"failure_published": True})


def _epoch(seconds: float) -> Decimal:
    return Decimal(str(round(seconds, 3)))


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: _to_dynamo(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_dynamo(inner) for inner in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamo(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(inner) for inner in value]
    return value
