"""The job store on DynamoDB: one item per job, created with a conditional write."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import ClientError

from vtp.core.jobstore import JobAlreadyExists, JobRecord
from vtp.core.manifest import now_iso

TABLE_ENV = "JOBS_TABLE"
DEFAULT_STACK = "VideoTranscodingPipeline"


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


class DynamoJobStore:
    def __init__(self, table_name: str, resource=None):
        self.table = (resource or boto3.resource("dynamodb")).Table(table_name)

    @classmethod
    def from_environment(cls, stack_name: str = DEFAULT_STACK) -> "DynamoJobStore":
        """The table named by JOBS_TABLE, else the JobsTableName output of the deployed stack."""
        name = os.environ.get(TABLE_ENV) or stack_output(stack_name, "JobsTableName")
        return cls(name)

    def create(self, record: JobRecord) -> None:
        record.created_at = record.created_at or now_iso()
        record.updated_at = record.created_at
        record.stage_times = {record.stage: record.created_at, **record.stage_times}
        # chunk_errors: each failing encoder's reason, by chunk name (see set_chunk_error).
        item = {**_to_dynamo(record.to_dict()), "chunk_errors": {}}
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise JobAlreadyExists(record.job_id) from None
            raise

    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = now_iso()
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": _to_dynamo(value) for i, value in enumerate(fields.values())}
        assignments = [f"#f{i} = :v{i}" for i in range(len(fields))]
        if "stage" in fields:
            # stage_times is created with the record, so one stage's stamp can be set in place.
            names["#times"], names["#stage"] = "stage_times", str(fields["stage"])
            values[":stamp"] = fields["updated_at"]
            assignments.append("#times.#stage = :stamp")
        self.table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET " + ", ".join(assignments),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def add_chunk_done(self, job_id: str, chunk: str | None = None) -> None:
        """Count a finished chunk atomically (encoders run in parallel); a failure recorded
        by an earlier attempt of the same chunk is cleared with it."""
        count = {
            "Key": {"job_id": job_id},
            "UpdateExpression": "ADD chunks_done :one SET updated_at = :now",
            "ExpressionAttributeValues": {":one": 1, ":now": now_iso()},
        }
        if chunk is not None:
            try:
                self.table.update_item(
                    **{**count, "UpdateExpression": count["UpdateExpression"] + " REMOVE chunk_errors.#chunk"},
                    ExpressionAttributeNames={"#chunk": chunk},
                )
                return
            except ClientError as error:
                # A record made before chunk_errors existed (a job in flight across a deploy).
                if error.response["Error"]["Code"] != "ValidationException":
                    raise
        self.table.update_item(**count)

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
        """The failures recorded by encoders whose chunk has not succeeded since, by chunk name.

        Read through UpdateItem's ReturnValues (touching updated_at): the failure function's
        role may update the job's item but not get it."""
        try:
            attributes = self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET updated_at = :now",
                ConditionExpression="attribute_exists(job_id)",
                ExpressionAttributeValues={":now": now_iso()},
                ReturnValues="ALL_NEW",
            ).get("Attributes", {})
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return {}
            raise
        return _from_dynamo(attributes.get("chunk_errors") or {})

    def get(self, job_id: str) -> JobRecord | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return JobRecord.from_dict(_from_dynamo(item)) if item else None

    def recent(self, limit: int = 20) -> list[JobRecord]:
        """Newest first. A scan: the table holds one small item per job."""
        items: list[dict] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self.table.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        records = [JobRecord.from_dict(_from_dynamo(item)) for item in items]
        return sorted(records, key=lambda r: r.created_at, reverse=True)[:limit]


def _to_dynamo(value: Any) -> Any:
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
