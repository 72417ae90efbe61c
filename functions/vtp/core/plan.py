"""Plan a job: which renditions to make and where the chunks start and end.

Times in a plan are on the output timeline: 0 is the source's first decoded video frame.
Chunk boundaries sit on the output segment grid, so every chunk is a whole number of
segments and every rung gets the same segments. Each chunk's encoder seeks into the
source and decodes from the keyframe before its start (the pre-roll); where the source's
keyframes are sparser than that allows, the boundary moves back to the segment boundary
just after the keyframe, so no frame is decoded for long before it is used. A source
whose keyframes are so sparse that a chunk would hold too many frames is refused with
that reason.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from vtp.core.config import Limits, PipelineConfig, Rung
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.probe import KeyframeFinder, SourceInfo

# Frames closer than this to a boundary could fall either side through rounding of the
# seconds; shifting every boundary by it puts a frame exactly on a boundary in the later chunk.
BOUNDARY_EPSILON_S = 1e-4


# A keyframe this close to the end of the video would start a segment of a few frames (which
# players fetch for little, and whose keyframe makes the rung's peak rate look far above its
# average): the last GOP, and segment, runs to the end instead.
SHORT_TAIL_GOPS = 0.25


def short_tail_s(config: PipelineConfig) -> float:
    return SHORT_TAIL_GOPS * config.gop_s


Zone = tuple[int, int, float]  # first frame, last frame, rate factor


def zones_from(data: Any) -> tuple[Zone, ...]:
    """Zones as a document holds them (lists)."""
    return tuple((int(first), int(last), float(crf)) for first, last, crf in data or ())


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    bitrate_kbps: int  # the fixed ladder's nominal rate; a fitted rung's predicted average
    crf: float  # the rung's rate factor (a fitted ladder's chunks each have their own: ChunkRates)
    # Pixel aspect ratio that keeps the source's display aspect exactly: rounding sizes to
    # even numbers (854x480, 426x240) changes the picture's own ratio slightly, and DASH
    # requires one display aspect ratio across an adaptation set.
    sample_aspect: str = "1/1"
    # A fitted rung: its VMAF target, and capped VBR (0: uncapped, the fixed ladder's CRF).
    target_vmaf: float | None = None
    maxrate_kbps: int = 0
    bufsize_kbps: int = 0
    # The H.264 level to write (level_idc: 31 is 3.1); 0: x264's own choice, which follows
    # the cap (a chunk encoded again under another cap must keep the rung's init).
    level_idc: int = 0
    # A rework's rate factors for parts of one chunk (first frame, last frame, rate factor;
    # frames counted from the chunk's first): x264 zones, so one segment over its share is
    # encoded at a higher factor than the rest of its chunk.
    zones: tuple[Zone, ...] = ()


@dataclass(frozen=True)
class Chunk:
    index: int
    start_s: float  # output timeline
    end_s: float | None  # None: to the end of the source
    seek_s: float | None  # source time the encoder seeks to; None: read from the start
    preroll_s: float = 0.0  # seconds decoded before start_s

    @property
    def name(self) -> str:
        return f"chunk_{self.index:05d}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Chunk":
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls) if field.name in data})


@dataclass(frozen=True)
class ChunkRates:
    """A chunk's own rate factor per rung (a fitted ladder), and what it was chosen from."""

    index: int
    crf: dict[str, float]
    basis: str  # "chunk": its own analysis; "title": the rung's (no analysis of this chunk)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChunkRates":
        return cls(data["index"], dict(data["crf"]), data["basis"])


@dataclass(frozen=True)
class RungRework:
    """One rung of one chunk encoded again: its new rate factor and cap, and why."""

    name: str
    crf: float
    maxrate_kbps: int
    bufsize_kbps: int
    reason: str
    level_idc: int = 0  # the rung's level as its first encode wrote it (kept: the same init)
    zones: tuple[Zone, ...] = ()  # segments at another rate factor than `crf` (Rendition.zones)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "crf": self.crf, "maxrate_kbps": self.maxrate_kbps,
                "bufsize_kbps": self.bufsize_kbps, "reason": self.reason, "level_idc": self.level_idc,
                "zones": [list(zone) for zone in self.zones]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RungRework":
        return cls(data["name"], float(data["crf"]), int(data["maxrate_kbps"]), int(data["bufsize_kbps"]),
                   data["reason"], int(data.get("level_idc", 0)), zones_from(data.get("zones")))


@dataclass(frozen=True)
class ChunkRework:
    index: int
    rungs: tuple[RungRework, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "rungs": [r.to_dict() for r in self.rungs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChunkRework":
        return cls(int(data["index"]), tuple(RungRework.from_dict(r) for r in data["rungs"]))

    def renditions(self, plan: "JobPlan") -> tuple[Rendition, ...]:
        """The plan's renditions for these rungs, with this chunk's caps (in the plan's order)."""
        caps = {r.name: r for r in self.rungs}
        return tuple(
            Rendition(r.name, r.width, r.height, r.bitrate_kbps, caps[r.name].crf, r.sample_aspect,
                      target_vmaf=r.target_vmaf, maxrate_kbps=caps[r.name].maxrate_kbps,
                      bufsize_kbps=caps[r.name].bufsize_kbps, level_idc=caps[r.name].level_idc,
                      zones=caps[r.name].zones)
            for r in plan.renditions if r.name in caps
        )

    def rates(self) -> ChunkRates:
        return ChunkRates(self.index, {r.name: r.crf for r in self.rungs}, "rework")


@dataclass(frozen=True)
class JobPlan:
    renditions: tuple[Rendition, ...]
    chunks: tuple[Chunk, ...]
    rates: tuple[ChunkRates, ...] = ()  # per chunk (a fitted ladder); empty: each rung's crf
    fit: dict[str, Any] | None = None  # how the ladder was fitted (vtp.core.ladder.LadderFit)

    def rates_for(self, index: int) -> ChunkRates:
        for rates in self.rates:
            if rates.index == index:
                return rates
        return ChunkRates(index, {r.name: r.crf for r in self.renditions}, "title")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobPlan":
        return cls(
            renditions=tuple(Rendition(**{**r, "zones": zones_from(r.get("zones"))}) for r in data["renditions"]),
            chunks=tuple(Chunk.from_dict(c) for c in data["chunks"]),
            rates=tuple(ChunkRates.from_dict(r) for r in data.get("rates", ())),
            fit=data.get("fit"),
        )


def plan_job(source: SourceInfo, config: PipelineConfig, find_keyframes: KeyframeFinder) -> JobPlan:
    return JobPlan(
        renditions=plan_ladder(source, config.ladder), chunks=plan_chunks(source, config, find_keyframes)
    )


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


def plan_chunks(source: SourceInfo, config: PipelineConfig, find_keyframes: KeyframeFinder) -> tuple[Chunk, ...]:
    duration = source.duration_s
    origin = source.video.origin_s
    boundaries = [k * config.chunk_s for k in range(1, math.ceil(duration / config.chunk_s))]
    boundaries = [b for b in boundaries if b < duration - BOUNDARY_EPSILON_S]
    # A short tail is not worth a process of its own: fold it into the chunk before.
    if boundaries and duration - boundaries[-1] < config.chunk_s / 2:
        boundaries.pop()

    found = find_keyframes([origin + b for b in boundaries])
    kept: dict[float, tuple[float, float]] = {}  # boundary -> (seek, keyframe), source times
    moved: list[float] = []
    previous = 0.0
    for boundary, query in zip(boundaries, found):
        preroll = origin + boundary - query.keyframe_s
        if preroll <= config.max_preroll_s + 1e-6:
            kept[boundary] = (query.seek_s, query.keyframe_s)
            previous = boundary
            continue
        # Sparse keyframes: start the chunk at the first segment boundary after the keyframe.
        later = math.ceil((query.keyframe_s - origin) / config.segment_s - 1e-9) * config.segment_s
        if later >= boundary - BOUNDARY_EPSILON_S:
            # The keyframe is in the segment just before the boundary (a pre-roll limit shorter
            # than a segment): no segment boundary is closer to it, so the boundary stays.
            kept[boundary] = (query.seek_s, query.keyframe_s)
            previous = boundary
        elif later > previous + BOUNDARY_EPSILON_S:
            moved.append(later)
            previous = later
    for boundary, query in zip(moved, find_keyframes([origin + b for b in moved])):
        kept[boundary] = (query.seek_s, query.keyframe_s)

    starts = sorted(kept)
    chunks = [Chunk(0, 0.0, starts[0] if starts else None, None, 0.0)]
    for index, start in enumerate(starts, start=1):
        seek, keyframe = kept[start]
        end = starts[index] if index < len(starts) else None
        chunks.append(Chunk(index, start, end, seek, max(0.0, origin + start - keyframe)))
    _check_chunk_sizes(chunks, source, config.limits)
    return tuple(chunks)


def _check_chunk_sizes(chunks: list[Chunk], source: SourceInfo, limits: Limits) -> None:
    """A chunk is one encoder's work: refuse a source whose keyframes make one too big."""
    rate = _average_rate(source)
    for chunk in chunks:
        end = chunk.end_s if chunk.end_s is not None else source.duration_s
        frames = (end - chunk.start_s + chunk.preroll_s) * rate
        if frames > limits.max_chunk_frames:
            raise PipelineError(
                ErrorCode.UNSUPPORTED_INPUT,
                f"the source has no keyframe between {chunk.start_s:.1f} s and {end:.1f} s, so one encoder "
                f"would have {frames:.0f} frames (limit {limits.max_chunk_frames}); re-encode it with a keyframe "
                f"at least every {limits.max_chunk_frames / max(rate, 1e-9) / 2:.0f} s",
            )


def _average_rate(source: SourceInfo) -> float:
    """Frames per second over the whole source: the container's count where it has one."""
    declared = source.video.frames_declared
    if declared and source.duration_s > 0:
        return declared / source.duration_s
    return float(Fraction(source.video.frame_rate))
