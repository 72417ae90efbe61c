"""manifest.json: the job's result, written last so a folder with a manifest is complete."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vtp.core.errors import PipelineError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
TIMING_KEYS = ("probe_s", "split_s", "encode_s", "merge_s", "package_s", "total_s")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def complete_manifest(
    job_id: str,
    source_name: str,
    source_summary: dict[str, Any],
    renditions: list[dict[str, Any]],
    audio: dict[str, Any] | None,
    chunk_count: int,
    timings: dict[str, float],
    outputs: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "job_id": job_id,
        "status": "COMPLETE",
        "input": source_name,
        "finished_at": now_iso(),
        "source": source_summary,
        "renditions": renditions,
        "audio": audio,
        "chunks": chunk_count,
        "timings": _rounded(timings),
        "outputs": outputs,
        "settings": settings,
    }


def failed_manifest(
    job_id: str,
    source_name: str,
    error: PipelineError,
    timings: dict[str, float],
    source_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "job_id": job_id,
        "status": "FAILED",
        "input": source_name,
        "finished_at": now_iso(),
        "error": error.to_dict(),
        "source": source_summary,
        "renditions": [],
        "chunks": 0,
        "timings": _rounded(timings),
    }


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {key: round(timings.get(key, 0.0), 3) for key in TIMING_KEYS}


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write atomically: readers never see a half-written manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / MANIFEST
    partial = folder / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, final)
    return final
