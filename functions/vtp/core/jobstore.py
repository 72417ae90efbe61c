"""The job store interface: where a job's status, timings and errors are kept.

Local runs keep it in SQLite, the AWS pipeline in DynamoDB; both keep the same record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class JobStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


@dataclass
class JobRecord:
    job_id: str
    input: str
    status: JobStatus = JobStatus.RUNNING
    stage: str = "probe"
    created_at: str = ""
    updated_at: str = ""
    chunks_total: int = 0
    chunks_done: int = 0
    output: str = ""
    error_code: str = ""
    error_message: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    # When each stage began (ISO 8601, UTC): {"split": ..., "encode": ..., "done": ...}
    stage_times: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["status"] = JobStatus(values.get("status", JobStatus.RUNNING))
        return cls(**values)


class JobAlreadyExists(Exception):
    pass


class JobStore(Protocol):
    def create(self, record: JobRecord) -> None:
        """Add a new job; raise JobAlreadyExists if its id is taken."""

    def update(self, job_id: str, **fields: Any) -> None:
        """Set fields; a new `stage` is also stamped in `stage_times`."""

    def get(self, job_id: str) -> JobRecord | None: ...

    def recent(self, limit: int = 20) -> list[JobRecord]:
        """Newest first."""
