"""manifest.json: the job's result, written last so a folder with a manifest is complete.

The document is typed: `Manifest` and its parts are dataclasses with `to_dict`/`from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vtp.core.errors import PipelineError

MANIFEST = "manifest.json"
REPORT = "report.html"  # beside the manifest: the job's page (vtp.report)
SCHEMA_VERSION = 2


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def epoch_of(iso: str | None) -> float | None:
    """An ISO 8601 time ("2026-11-30T18:00:00.123Z": ours, Step Functions') as epoch seconds."""
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp() if iso else None
    except ValueError:
        return None


@dataclass(frozen=True)
class StageFigures:
    """What a stage cost: the same fields for the split, each chunk, and the merge."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    requests: int = 0  # reads (one per open or seek, ranged GETs on AWS) plus objects written
    max_rss_mb: float = 0.0
    objects_written: int = 0  # of `requests`: the PUTs
    memory_mb: int = 0  # the function's configured memory on AWS (what Lambda bills); 0 locally

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3), "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written, "requests": self.requests, "max_rss_mb": round(self.max_rss_mb, 1),
            "objects_written": self.objects_written, "memory_mb": self.memory_mb,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StageFigures":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def __add__(self, other: "StageFigures") -> "StageFigures":
        return StageFigures(
            wall_s=self.wall_s + other.wall_s, cpu_s=self.cpu_s + other.cpu_s,
            bytes_read=self.bytes_read + other.bytes_read, bytes_written=self.bytes_written + other.bytes_written,
            requests=self.requests + other.requests, max_rss_mb=max(self.max_rss_mb, other.max_rss_mb),
            objects_written=self.objects_written + other.objects_written, memory_mb=max(self.memory_mb, other.memory_mb),
        )

    @classmethod
    def peak(cls, figures: list["StageFigures"]) -> "StageFigures":
        """The most of each figure over several (not necessarily one's)."""
        return cls(**{f.name: max(getattr(x, f.name) for x in figures) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class EncodeFigures:
    """The chunk encoders together: sums, the largest single chunk, and the map's span."""

    chunks: int
    sum: StageFigures
    max: StageFigures
    span_s: float  # first encoder's start to the last one's end

    def to_dict(self) -> dict[str, Any]:
        return {"chunks": self.chunks, "sum": self.sum.to_dict(), "max": self.max.to_dict(), "span_s": round(self.span_s, 3)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncodeFigures":
        return cls(data["chunks"], StageFigures.from_dict(data["sum"]), StageFigures.from_dict(data["max"]), data["span_s"])


@dataclass(frozen=True)
class Stages:
    split: StageFigures
    encode: EncodeFigures | None
    merge: StageFigures
    total_s: float  # the job's wall time, from its claim to its manifest
    # The audio is encoded by the chunk encoders, each its own range beside its video: its
    # part of their figures (sum and max over the chunks; wall time runs beside the video's).
    audio: EncodeFigures | None = None
    # A fitted ladder's analysis (one task per chunk, before the encoders) and the fitting.
    analyse: EncodeFigures | None = None
    fit: StageFigures | None = None
    # A fitted ladder's rework: the chunk-rungs encoded again after the encode map.
    rework: EncodeFigures | None = None

    @property
    def critical_path_s(self) -> float:
        """Split, the analysis map and the fit (a fitted ladder), then the encode map (audio is
        encoded inside the chunk encoders), the rework map, then the merge."""
        analysis = (self.analyse.span_s if self.analyse else 0.0) + (self.fit.wall_s if self.fit else 0.0)
        rework = self.rework.span_s if self.rework else 0.0
        return self.split.wall_s + analysis + (self.encode.span_s if self.encode else 0.0) + rework + self.merge.wall_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split.to_dict(),
            "encode": self.encode.to_dict() if self.encode else None,
            "audio": {"in_encoders": True, **(self.audio.to_dict() if self.audio else {})},
            "merge": self.merge.to_dict(),
            "analyse": self.analyse.to_dict() if self.analyse else None,
            "fit": self.fit.to_dict() if self.fit else None,
            "rework": self.rework.to_dict() if self.rework else None,
            "critical_path_s": round(self.critical_path_s, 3),
            "total_s": round(self.total_s, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Stages":
        encode = EncodeFigures.from_dict(data["encode"]) if data.get("encode") else None
        audio = data.get("audio") or {}
        audio_figures = EncodeFigures.from_dict(audio) if "sum" in audio else None
        return cls(StageFigures.from_dict(data["split"]), encode, StageFigures.from_dict(data["merge"]),
                   data["total_s"], audio_figures,
                   EncodeFigures.from_dict(data["analyse"]) if data.get("analyse") else None,
                   StageFigures.from_dict(data["fit"]) if data.get("fit") else None,
                   EncodeFigures.from_dict(data["rework"]) if data.get("rework") else None)


@dataclass(frozen=True)
class RenditionEntry:
    name: str
    width: int
    height: int
    codec: str
    codecs: str  # RFC 6381
    target_bitrate_kbps: int
    measured_bitrate_kbps: float  # average over the rung
    peak_bitrate_kbps: float  # the highest segment's
    frames: int
    duration_s: float
    size_bytes: int
    segments: int
    hls_playlist: str
    # Measured in the encoders (vtp.core.quality): vmaf_mean, vmaf_error, vmaf_p5, vmaf_worst_chunk, psnr_db,
    # ssim, frames_scored, sampling; None where it was not measured.
    quality: dict[str, Any] | None = None
    # A fitted rung: its VMAF target, its cap (maxrate), and its rate factor: the rung's and
    # the range its chunks used; None for the fixed ladder's.
    target_vmaf: float | None = None
    maxrate_kbps: int = 0
    rate_factor: dict[str, float] | None = None


@dataclass(frozen=True)
class AudioEntry:
    codec: str
    codecs: str
    bitrate_kbps: int
    measured_bitrate_kbps: float
    channels: int
    sample_rate: int
    duration_s: float
    size_bytes: int
    hls_playlist: str


@dataclass(frozen=True)
class TimelineBar:
    """One stage run on the job's clock: the split, each chunk's encoder, the merge.

    Recorded where it happens: an encoder puts its own start, end, attempt, cold start and
    request id (or local worker) in its result."""

    stage: str  # split, encode, merge
    label: str
    start_s: float  # since the job's start
    end_s: float
    chunk: int | None = None
    wait_s: float = 0.0  # before start_s: queued (locally: waiting for a worker; on AWS: from the Map's dispatch, cold start included)
    cold_start: bool | None = None  # None where it does not apply (local)
    attempt: int = 0  # 0 on the first try; retries = attempt
    worker: str = ""  # the Lambda request id, or host and worker slot
    memory_mb: int = 0
    critical: bool = False  # on the critical path: the split, the chunk that ended last, the merge

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("start_s", "end_s", "wait_s"):
            data[name] = round(data[name], 3)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TimelineBar":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class JobTimeline:
    started_at: float  # epoch seconds: the claim (AWS) or the command's start (local)
    bars: tuple[TimelineBar, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "bars": [bar.to_dict() for bar in self.bars]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobTimeline":
        return cls(data["started_at"], tuple(TimelineBar.from_dict(bar) for bar in data.get("bars", [])))


@dataclass(frozen=True)
class Manifest:
    job_id: str
    status: str  # COMPLETE or FAILED
    input: str
    finished_at: str
    source: dict[str, Any] | None = None
    renditions: tuple[RenditionEntry, ...] = ()
    audio: AudioEntry | None = None
    chunks: int = 0
    stages: Stages | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    failed_stage: str | None = None
    where: str = "local"  # local or aws
    timeline: JobTimeline | None = None
    cost: dict[str, Any] | None = None  # vtp.core.cost.JobCost.to_dict()
    # How the ladder was made: {"mode": "fixed"}, or a fitted one's targets, candidates' curves,
    # dropped rungs and analysis (vtp.core.ladder).
    ladder: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": self.schema_version,
            "job_id": self.job_id,
            "status": self.status,
            "input": self.input,
            "finished_at": self.finished_at,
            "source": self.source,
            "renditions": [dataclasses.asdict(r) for r in self.renditions],
            "audio": dataclasses.asdict(self.audio) if self.audio else None,
            "chunks": self.chunks,
            "stages": self.stages.to_dict() if self.stages else None,
            "outputs": self.outputs,
            "settings": self.settings,
            "where": self.where,
            "timeline": self.timeline.to_dict() if self.timeline else None,
            "cost": self.cost,
            "ladder": self.ladder,
        }
        if self.status == "FAILED":
            data["error"] = self.error
            data["failed_stage"] = self.failed_stage
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        return cls(
            job_id=data["job_id"],
            status=data["status"],
            input=data["input"],
            finished_at=data["finished_at"],
            source=data.get("source"),
            renditions=tuple(RenditionEntry(**r) for r in data.get("renditions", [])),
            audio=AudioEntry(**data["audio"]) if data.get("audio") else None,
            chunks=data.get("chunks", 0),
            stages=Stages.from_dict(data["stages"]) if data.get("stages") else None,
            outputs=data.get("outputs", {}),
            settings=data.get("settings", {}),
            error=data.get("error"),
            failed_stage=data.get("failed_stage"),
            where=data.get("where", "local"),
            timeline=JobTimeline.from_dict(data["timeline"]) if data.get("timeline") else None,
            cost=data.get("cost"),
            ladder=data.get("ladder"),
            schema_version=data.get("schema_version", SCHEMA_VERSION),
        )


def failed_manifest(
    job_id: str,
    source_name: str,
    error: PipelineError,
    *,
    stage: str,
    stages: Stages | None = None,
    source_summary: dict[str, Any] | None = None,
    timeline: JobTimeline | None = None,
    where: str = "local",
) -> Manifest:
    return Manifest(
        job_id=job_id,
        status="FAILED",
        input=source_name,
        finished_at=now_iso(),
        source=source_summary,
        stages=stages,
        error=error.to_dict(),
        failed_stage=stage,
        timeline=timeline,
        where=where,
    )


def manifest_json(manifest: Manifest) -> str:
    return json.dumps(manifest.to_dict(), indent=2) + "\n"


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write atomically: readers never see a half-written manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / MANIFEST
    partial = folder / f".{MANIFEST}.partial"
    partial.write_text(manifest_json(manifest))
    os.replace(partial, final)
    return final
