"""The embedded job store: one SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from vtp.core.jobstore import JobAlreadyExists, JobRecord
from vtp.core.manifest import now_iso

HOME_ENV = "VTP_HOME"

_COLUMNS = (
    "job_id", "input", "status", "stage", "created_at", "updated_at", "chunks_total",
    "chunks_done", "output", "error_code", "error_message", "timings", "stage_times",
)
_JSON_COLUMNS = ("timings", "stage_times")


def default_store_path() -> Path:
    home = os.environ.get(HOME_ENV)
    base = Path(home) if home else Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "vtp"
    return base / "jobs.sqlite3"


class SqliteJobStore:
    def __init__(self, path: Path | None = None):
        self.path = path or default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS jobs ("
                "job_id TEXT PRIMARY KEY, input TEXT, status TEXT, stage TEXT, created_at TEXT, "
                "updated_at TEXT, chunks_total INTEGER, chunks_done INTEGER, output TEXT, "
                "error_code TEXT, error_message TEXT, timings TEXT, stage_times TEXT)"
            )
            present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "stage_times" not in present:  # a store made by an earlier version
                db.execute("ALTER TABLE jobs ADD COLUMN stage_times TEXT")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created_at)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def create(self, record: JobRecord) -> None:
        record.created_at = record.created_at or now_iso()
        record.updated_at = record.created_at
        record.stage_times = {record.stage: record.created_at, **record.stage_times}
        row = record.to_dict()
        for column in _JSON_COLUMNS:
            row[column] = json.dumps(row[column])
        try:
            with closing(self._connect()) as db, db:
                db.execute(
                    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
                    [row[c] for c in _COLUMNS],
                )
        except sqlite3.IntegrityError:
            raise JobAlreadyExists(record.job_id) from None

    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = now_iso()
        if "stage" in fields:
            current = self.get(job_id)
            stamps = current.stage_times if current else {}
            fields["stage_times"] = {**stamps, fields["stage"]: fields["updated_at"]}
        for column in _JSON_COLUMNS:
            if column in fields:
                fields[column] = json.dumps(fields[column])
        if "status" in fields:
            fields["status"] = str(fields["status"])
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with closing(self._connect()) as db, db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", [*fields.values(), job_id])

    def get(self, job_id: str) -> JobRecord | None:
        with closing(self._connect()) as db:
            row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE job_id = ?", [job_id]).fetchone()
        return self._record(row) if row else None

    def recent(self, limit: int = 20) -> list[JobRecord]:
        with closing(self._connect()) as db:
            rows = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", [limit]
            ).fetchall()
        return [self._record(row) for row in rows]

    @staticmethod
    def _record(row: tuple) -> JobRecord:
        data = dict(zip(_COLUMNS, row))
        for column in _JSON_COLUMNS:
            data[column] = json.loads(data[column] or "{}")
        return JobRecord.from_dict(data)
