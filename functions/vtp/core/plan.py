"""Plan a job: which renditions to make and where the chunks start and end.

Times in a plan are on the output timeline: 0 is the source's first video frame.
Chunk boundaries sit on the output keyframe grid (multiples of the GOP), so every
rung gets the same regular segments. Each chunk also names the stream-copy piece of
the source it is decoded from: from the source keyframe at or before its start to
the second source keyframe at or after its end (open GOPs need frames past it).
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from dataclasses import dataclass
from typing import Any

from vtp.core.config import PipelineConfig, Rung
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.probe import SourceInfo

# Frames closer than this to a boundary could fall either side through rounding of the
# seconds; shifting every boundary by it puts a frame exactly on a boundary in the later chunk.
BOUNDARY_EPSILON_S = 1e-4


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    bitrate_kbps: int
    crf: int
    # Pixel aspect ratio that keeps the source's display aspect exactly: rounding sizes to
    # even numbers (854x480, 426x240) changes the picture's own ratio slightly, and DASH
    # requires one display aspect ratio across an adaptation set.
    sample_aspect: str = "1/1"


@dataclass(frozen=True)
class Chunk:
    index: int
    start_s: float  # output timeline
    end_s: float | None  # None: to the end of the source
    piece_start_s: float | None  # absolute source time of the piece's first keyframe; None: from the start
    piece_end_s: float | None  # absolute source time to cut the piece before; None: to the end

    @property
    def name(self) -> str:
        return f"chunk_{self.index:05d}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Chunk":
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})


@dataclass(frozen=True)
class JobPlan:
    renditions: tuple[Rendition, ...]
    chunks: tuple[Chunk, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobPlan":
        return cls(
            renditions=tuple(Rendition(**r) for r in data["renditions"]),
            chunks=tuple(Chunk.from_dict(c) for c in data["chunks"]),
        )


def plan_job(source: SourceInfo, config: PipelineConfig) -> JobPlan:
    return JobPlan(renditions=plan_ladder(source, config.ladder), chunks=plan_chunks(source, config))


def plan_ladder(source: SourceInfo, ladder: tuple[Rung, ...]) -> tuple[Rendition, ...]:
    """The rungs that fit the source, never upscaled; portrait sources get portrait rungs."""
    width, height = source.video.display_width, source.video.display_height
    short_side, long_side = min(width, height), max(width, height)
    # A rung the source fills in either direction counts, with a little slack: a 1916x1076
    # crop is "1080p", and so is a 1920x800 widescreen film.
    fitting = [
        rung for rung in ladder if rung.height <= short_side * 1.05 or rung.box_width <= long_side * 1.05
    ]
    if not fitting:
        smallest = min(ladder, key=lambda rung: rung.height)
        fitting = [smallest]
    renditions = []
    seen_sizes = set()
    for rung in sorted(fitting, key=lambda r: r.height, reverse=True):
        out_width, out_height = _fit(width, height, rung)
        if (out_width, out_height) in seen_sizes:
            continue
        seen_sizes.add((out_width, out_height))
        sample_aspect = _sample_aspect(width, height, out_width, out_height)
        renditions.append(Rendition(rung.name, out_width, out_height, rung.bitrate_kbps, rung.crf, sample_aspect))
    return tuple(renditions)


def _fit(width: int, height: int, rung: Rung) -> tuple[int, int]:
    box_width, box_height = rung.box_width, rung.height
    if height > width:
        box_width, box_height = box_height, box_width
    scale = min(box_width / width, box_height / height, 1.0)
    # Never a pixel past the source, even through rounding to even.
    return min(_even(width * scale), max(2, width - width % 2)), min(_even(height * scale), max(2, height - height % 2))


def _sample_aspect(display_width: int, display_height: int, width: int, height: int) -> str:
    # H.264 stores the pixel aspect ratio in 16 bits each way.
    ratio = (Fraction(display_width, display_height) / Fraction(width, height)).limit_denominator(65535)
    while ratio.numerator > 65535:
        ratio = ratio.limit_denominator(ratio.denominator // 2)
    return f"{ratio.numerator}/{ratio.denominator}"


def _even(value: float) -> int:
    """H.264 4:2:0 needs even sizes."""
    return max(2, 2 * round(value / 2.0))


def plan_chunks(source: SourceInfo, config: PipelineConfig) -> tuple[Chunk, ...]:
    video = source.video
    duration = source.duration_s
    boundaries = [k * config.chunk_s for k in range(1, math.ceil(duration / config.chunk_s))]
    boundaries = [b for b in boundaries if b < duration - BOUNDARY_EPSILON_S]
    # A short tail is not worth a process of its own: fold it into the chunk before.
    if boundaries and duration - boundaries[-1] < config.chunk_s / 2:
        boundaries.pop()
    starts = [0.0, *boundaries]
    ends: list[float | None] = [*boundaries, None]

    chunks = []
    for index, (start, end) in enumerate(zip(starts, ends)):
        piece_start = None
        if index > 0:
            piece_start = video.keyframe_at_or_before(video.start_s + start - BOUNDARY_EPSILON_S)
            if piece_start is None:
                raise PipelineError(ErrorCode.CORRUPT_INPUT, f"no keyframe before {start:.3f} s")
            if piece_start <= video.keyframe_times[0]:
                piece_start = None
        piece_end = None
        if end is not None:
            following = video.keyframes_after(video.start_s + end - BOUNDARY_EPSILON_S)
            piece_end = following[1] if len(following) > 1 else None
        chunks.append(Chunk(index, start, end, piece_start, piece_end))
    return tuple(chunks)
