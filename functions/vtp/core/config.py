"""Pipeline settings: the ladder, the keyframe/chunk/segment grid, rate control, limits."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vtp.core.errors import ErrorCode, PipelineError


class LadderMode(StrEnum):
    # Fitted to each title (vtp.core.ladder): analysis of sampled frames, rungs on the convex
    # hull for quality targets, capped VBR, a rate factor per chunk.
    AUTO = "auto"
    # The same rungs (`ladder`) for every title, at their fixed rate factors.
    FIXED = "fixed"


class RateControl(StrEnum):
    # Constant quality (CRF). Chunked CRF matches a single pass (measured), so it is the default.
    CRF = "crf"
    # CRF with the rung's bitrate as a VBV peak cap: bounded peaks for streaming, but each chunk
    # restarts its VBV buffer (more bytes, slightly higher quality than one pass).
    CAPPED_CRF = "capped_crf"
    # Target average bitrate per rung (ABR with VBV).
    BITRATE = "bitrate"


@dataclass(frozen=True)
class Rung:
    """One rendition of the ladder: fits inside a box of `height` lines (16:9 width)."""

    name: str
    height: int
    bitrate_kbps: int
    crf: int

    @property
    def box_width(self) -> int:
        return (self.height * 16 + 8) // 9  # 1080 -> 1920, 720 -> 1280, 480 -> 854, 360 -> 640


DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("1080p", 1080, 5000, 23),
    Rung("720p", 720, 3000, 23),
    Rung("480p", 480, 1200, 24),
    Rung("360p", 360, 700, 25),
)

KNOWN_RUNGS: dict[str, Rung] = {
    rung.name: rung
    for rung in (
        Rung("2160p", 2160, 16000, 22),
        Rung("1440p", 1440, 9000, 22),
        *DEFAULT_LADDER,
        Rung("240p", 240, 400, 26),
    )
}


@dataclass(frozen=True)
class Limits:
    """What a source may be. Each is checked from the container's header, before any decoding."""

    max_bytes: int = 50 * 1024**3
    max_duration_s: float = 12 * 3600.0
    max_width: int = 7680
    max_height: int = 4320
    max_frame_rate: float = 240.0
    # A chunk is decoded from the source keyframe before it; where keyframes are sparser
    # than chunks, chunks start after keyframes instead and grow. A source whose chunks would
    # hold more frames than this (5 minutes at 30 fps) is refused.
    max_chunk_frames: int = 9000


# Candidate sizes of a fitted ladder (never above the source's), and each one's bit rate cap.
AUTO_CAPS_KBPS: dict[int, int] = {2160: 40000, 1440: 24000, 1080: 16000, 720: 8000, 480: 4000, 360: 2500, 240: 1200}


@dataclass(frozen=True)
class AutoLadder:
    """How a ladder is fitted to a title (vtp.core.ladder, vtp.core.analysis)."""

    top_vmaf: float = 95.0  # the top rung's quality target
    vmaf_step: float = 8.0  # each rung's target this much below the one above it
    min_vmaf: float = 50.0  # no rung is aimed lower
    max_rungs: int = 5
    max_rungs_per_size: int = 2  # a size may hold a second rung; more leave small screens without one
    # A rung is dropped where it saves too little over the rung above it (bit rate ratio).
    min_rate_step: float = 1.5
    min_floor_step: float = 1.2  # the same for a rung held up to the fixed ladder's (`at_least_fixed`)
    resolutions: int = 4  # candidate sizes analysed: the largest that fit the source
    crfs: tuple[float, ...] = (18.0, 26.0, 34.0)  # rate factors each candidate is tried at
    frames: int = 8  # frames per analysis window: their sizes give the rates, 5 of them the quality
    windows_per_chunk: int = 1
    analyse_every: int = 3  # one chunk in so many is analysed (spread over the title)
    min_windows: int = 1
    # The share of a chunk's own analysis in its rate factor (0: the title's for every chunk).
    chunk_weight: float = 0.5
    max_chunk_offset: float = 4.0  # how far a chunk's rate factor may move from the rung's
    # Capped VBR: peak rate and buffer as multiples of the rung's fitted average rate.
    maxrate_ratio: float = 1.5
    bufsize_ratio: float = 2.0
    hard_chunk_headroom: float = 1.25  # the cap is at least this times the hardest analysed chunk's rate
    # Never under the fixed ladder: each rung's target is at least the quality the analysis
    # predicts for the fixed ladder's rung of the same rank (easy content: the fixed ladder's
    # rate factors already make VMAF 98; the fitted ladder saves on the rungs below it).
    at_least_fixed: bool = True
    # The rework after the encode map (vtp.core.rework): a rung measured under its target
    # + `quality_slack` is encoded again aiming `quality_aim` over it; a chunk with a segment
    # over `peak_limit` times the rung's average is encoded again capped at `peak_aim` times it.
    quality_slack: float = 0.5
    quality_aim: float = 1.5
    peak_limit: float = 1.5
    peak_aim: float = 1.35
    caps_kbps: dict[int, int] = field(default_factory=lambda: dict(AUTO_CAPS_KBPS))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AutoLadder":
        data = dict(data)
        if "crfs" in data:
            data["crfs"] = tuple(data["crfs"])
        if "caps_kbps" in data:
            data["caps_kbps"] = {int(k): int(v) for k, v in data["caps_kbps"].items()}
        return cls(**data)


@dataclass(frozen=True)
class PipelineConfig:
    ladder_mode: LadderMode = LadderMode.AUTO
    ladder: tuple[Rung, ...] = DEFAULT_LADDER  # the fixed ladder
    auto: AutoLadder = field(default_factory=AutoLadder)
    gop_s: float = 2.0
    chunk_s: float = 12.0  # a whole number of segments: a segment never spans two chunks
    segment_s: float = 4.0
    # Decoding a chunk starts at the source keyframe before it; a chunk boundary whose
    # keyframe is further back than this moves back to the segment boundary after that keyframe.
    max_preroll_s: float = 4.0
    video_codec: str = "libx264"
    preset: str = "veryfast"
    profile: str = "high"
    rate_control: RateControl = RateControl.CRF
    audio_bitrate_kbps: int = 128
    audio_channels: int = 2
    audio_sample_rate: int = 48000
    # x264 threads per encoder in a chunk process; 0 = let x264 choose (a Lambda encodes one
    # chunk on all its vCPUs); the local runner sets 1 when every core has a chunk process.
    encoder_threads: int = 0
    # Quality (VMAF, PSNR, SSIM) of every rung (vtp.core.quality): the first 3 frames of one
    # segment in every so many are scored, so that about `quality_samples` runs are scored per
    # rung (0: not measured), at least one segment in `quality_max_stride` (long titles).
    quality_samples: int = 300
    quality_max_stride: int = 8
    thumbnail_interval_s: float = 2.0
    thumbnail_width: int = 160
    poster_width: int = 1280
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        problems = []
        if not self.ladder:
            problems.append("the ladder has no rungs")
        if not all(_positive(length) for length in (self.gop_s, self.chunk_s, self.segment_s)):
            problems.append("gop, chunk and segment lengths must be positive")
        elif not _is_multiple(self.chunk_s, self.gop_s):
            problems.append(f"chunk length {self.chunk_s} s is not a multiple of the GOP {self.gop_s} s")
        elif not _is_multiple(self.segment_s, self.gop_s):
            problems.append(f"segment length {self.segment_s} s is not a multiple of the GOP {self.gop_s} s")
        elif not _is_multiple(self.chunk_s, self.segment_s):
            problems.append(f"chunk length {self.chunk_s} s is not a multiple of the segment {self.segment_s} s")
        auto = self.auto
        if not (0 < auto.top_vmaf <= 100 and auto.vmaf_step > 0 and auto.max_rungs >= 1 and auto.min_rate_step >= 1
                and auto.min_floor_step >= 1
                and len(auto.crfs) >= 2 and auto.frames >= 6 and auto.windows_per_chunk >= 1 and auto.resolutions >= 1):
            problems.append("the fitted ladder's settings are out of range (VMAF target 0-100, 2+ rate factors, 6+ frames)")
        if self.quality_samples < 0 or self.quality_max_stride < 1:
            problems.append("quality samples must be 0 (off) or more, and the sampling stride 1 segment or more")
        if not (math.isfinite(self.max_preroll_s) and self.max_preroll_s >= 0):
            problems.append(f"the pre-roll limit {self.max_preroll_s} s must be 0 or more")
        # A limit of 0 would refuse every source as the input's fault (not retried).
        unusable = [f.name for f in dataclasses.fields(self.limits) if not _positive(getattr(self.limits, f.name))]
        if unusable:
            problems.append(f"limits must be positive: {', '.join(unusable)}")
        names = [rung.name for rung in self.ladder]
        if len(set(names)) != len(names):
            problems.append("rung names repeat")
        if problems:
            raise PipelineError(ErrorCode.INVALID_CONFIG, "; ".join(problems))

    def with_changes(self, **changes: Any) -> "PipelineConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineConfig":
        data = dict(data)
        data["ladder"] = tuple(Rung(**rung) for rung in data["ladder"]) if "ladder" in data else DEFAULT_LADDER
        data["limits"] = Limits(**data.get("limits", {}))
        data["rate_control"] = RateControl(data.get("rate_control", RateControl.CRF))
        data["ladder_mode"] = LadderMode(data.get("ladder_mode", LadderMode.AUTO))
        data["auto"] = AutoLadder.from_dict(data.get("auto", {}))
        return cls(**data)


def config_from_environment(environ: dict[str, str]) -> PipelineConfig:
    """Settings of a deployed pipeline, from the Lambdas' environment (unset: defaults)."""
    changes: dict[str, Any] = {}
    if environ.get("VTP_LADDER"):
        changes.update(ladder_setting(environ["VTP_LADDER"]))
    if environ.get("VTP_TOP_VMAF"):
        try:
            changes["auto"] = AutoLadder(top_vmaf=float(environ["VTP_TOP_VMAF"]))
        except ValueError:
            raise PipelineError(ErrorCode.INVALID_CONFIG, f"VTP_TOP_VMAF={environ['VTP_TOP_VMAF']!r} is not a number") from None
    for name, field_name in (("VTP_GOP_S", "gop_s"), ("VTP_CHUNK_S", "chunk_s"), ("VTP_SEGMENT_S", "segment_s")):
        if environ.get(name):
            try:
                changes[field_name] = float(environ[name])
            except ValueError:
                raise PipelineError(ErrorCode.INVALID_CONFIG, f"{name}={environ[name]!r} is not a number") from None
    if environ.get("VTP_PRESET"):
        changes["preset"] = environ["VTP_PRESET"]
    if environ.get("VTP_RATE_CONTROL"):
        try:
            changes["rate_control"] = RateControl(environ["VTP_RATE_CONTROL"])
        except ValueError:
            raise PipelineError(ErrorCode.INVALID_CONFIG, f"unknown VTP_RATE_CONTROL {environ['VTP_RATE_CONTROL']!r}") from None
    limits = {}
    for name, field_name, kind in (("VTP_MAX_BYTES", "max_bytes", int), ("VTP_MAX_DURATION_S", "max_duration_s", float)):
        if environ.get(name):
            try:
                limits[field_name] = kind(environ[name])
            except ValueError:
                raise PipelineError(ErrorCode.INVALID_CONFIG, f"{name}={environ[name]!r} is not a number") from None
    if limits:
        changes["limits"] = dataclasses.replace(Limits(), **limits)
    return PipelineConfig(**changes)


def ladder_setting(value: str) -> dict[str, Any]:
    """'auto' (fitted), 'fixed' (the default rungs) or rung names ('1080p,720p': fixed)."""
    value = value.strip().lower()
    if value == LadderMode.AUTO:
        return {"ladder_mode": LadderMode.AUTO}
    if value == LadderMode.FIXED:
        return {"ladder_mode": LadderMode.FIXED}
    return {"ladder_mode": LadderMode.FIXED, "ladder": ladder_from_names(value)}


def ladder_from_names(names: str) -> tuple[Rung, ...]:
    """'1080p,720p' -> rungs; unknown names are a configuration error."""
    rungs = []
    for name in (part.strip() for part in names.split(",") if part.strip()):
        if name not in KNOWN_RUNGS:
            known = ", ".join(KNOWN_RUNGS)
            raise PipelineError(ErrorCode.INVALID_CONFIG, f"unknown rung {name!r} (known: {known})")
        rungs.append(KNOWN_RUNGS[name])
    return tuple(rungs)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _is_multiple(value: float, unit: float) -> bool:
    ratio = value / unit
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1
