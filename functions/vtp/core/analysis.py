"""Analysis for a fitted ladder: how quality grows with bit rate at each candidate size, measured
on a few frames of a chunk (one analysis task per chunk: the analysis map on AWS, the worker
pool locally).

Each window is a few frames from a source keyframe (where a seek inside the chunk lands), so
nothing is decoded for long before it is used. Every candidate
size is encoded at every trial rate factor (the encode's own x264 settings, a keyframe at
each window's start, as a segment starts), which gives the bytes; VMAF of the middle frames
gives the quality:

- bytes: the window's keyframe plus its other frames, weighted as a GOP holds them (one
  keyframe, then `gop - 1` frames like the others), the others scaled by how the chunk's
  source frames compare in size with the windows' (`_spread`: the source's own encoder has
  already told how hard each part of the chunk is), so a few frames predict the chunk's rate;
- quality: VMAF v0.6.1 against the upright source frames at the display size, on one cell
  of a 3x3 grid over the picture (the windows take the cells in turn): a cell costs a ninth
  of a frame (VMAF is most of the analysis' cost: about 100 ms a 1080p frame, as much as
  x264 veryfast spends on a frame of grain). Measured on the grainy 1080p clip, 60 frames of
  its 720p rung: whole picture 79.09; quarters 77.87 to 80.90, 79.44 over the four; ninths
  from 76.2 to 80.9. The first and last
  frame of a window are fed but not counted: VMAF's motion feature needs both neighbours.

The encodes run in the main ffmpeg (one process for the window's decoding and every trial
encode), the scores in the scorer (`tools.run_scorer`, one process for every trial).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtp.core import fmp4, probe
from vtp.core.config import KNOWN_RUNGS, PipelineConfig
from vtp.core.encode import encoder_options, picture_chain, scale_chain
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import StageFigures
from vtp.core.plan import BOUNDARY_EPSILON_S, Chunk, Rendition, plan_ladder
from vtp.core.probe import SourceInfo
from vtp.core.source import Source
from vtp.core.tools import FfmpegFailed, ff, io_stats, run_ffmpeg, run_scorer

SCORE_TIME_BASE = "1/25"
MIN_USUAL_HEIGHT = 360  # smaller sizes are tried only for small sources


@dataclass(frozen=True)
class TrialPoint:
    """One candidate size at one rate factor, over a chunk's windows."""

    rendition: str
    crf: float
    kbps: float  # predicted average rate (GOP-weighted)
    vmaf: tuple[float, ...]  # the scored frames

    @property
    def vmaf_mean(self) -> float:
        return sum(self.vmaf) / len(self.vmaf) if self.vmaf else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"rendition": self.rendition, "crf": self.crf, "kbps": round(self.kbps, 1),
                "vmaf": [round(v, 3) for v in self.vmaf]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialPoint":
        return cls(data["rendition"], float(data["crf"]), float(data["kbps"]), tuple(data["vmaf"]))


@dataclass(frozen=True)
class ChunkAnalysis:
    """An analysis task's result: one chunk's trial points, and what measuring them cost."""

    index: int
    duration_s: float  # the chunk's length: its weight in the title's curves
    windows: int
    frames: int  # source frames analysed
    points: tuple[TrialPoint, ...]
    figures: StageFigures
    started_at: float = 0.0
    ended_at: float = 0.0
    worker: str = ""
    # The chunk's source bits per frame over the windows' (non-key frames): how much more the
    # rest of the chunk costs than its windows (applied to the trial rates; see `spread`).
    spread: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "duration_s": round(self.duration_s, 6), "windows": self.windows,
                "frames": self.frames, "spread": round(self.spread, 3), "points": [p.to_dict() for p in self.points],
                "figures": self.figures.to_dict(), "started_at": self.started_at, "ended_at": self.ended_at,
                "worker": self.worker}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChunkAnalysis":
        return cls(data["index"], data["duration_s"], data["windows"], data["frames"],
                   tuple(TrialPoint.from_dict(p) for p in data["points"]), StageFigures.from_dict(data["figures"]),
                   data.get("started_at", 0.0), data.get("ended_at", 0.0), data.get("worker", ""),
                   data.get("spread", 1.0))


def candidates(info: SourceInfo, config: PipelineConfig) -> tuple[Rendition, ...]:
    """The sizes a fitted ladder chooses from: the largest `resolutions` known sizes that fit
    the source (never upscaled; portrait sources get portrait sizes), none below 360 lines
    unless the source is that small (then two sizes at least)."""
    known = tuple(rung for rung in KNOWN_RUNGS.values() if rung.height in config.auto.caps_kbps)
    fitting = plan_ladder(info, known)[: config.auto.resolutions]
    usual = tuple(size for size in fitting if int(size.name.rstrip("p")) >= MIN_USUAL_HEIGHT)
    return usual if len(usual) >= 2 else fitting[:2]


def window_count(config: PipelineConfig, chunks: int) -> int:
    """Windows per chunk: a title of few chunks has more, at least `min_windows` in all."""
    return max(config.auto.windows_per_chunk, -(-config.auto.min_windows // max(chunks, 1)))


def window_starts(chunk: Chunk, info: SourceInfo, config: PipelineConfig, chunks: int) -> tuple[float, ...]:
    """Where a chunk's windows are sought without the source's packets (output timeline): the
    middles of equal parts of it. Each window starts at the source keyframe at or before."""
    end = chunk.end_s if chunk.end_s is not None else info.duration_s
    count = window_count(config, chunks)
    return tuple(round(chunk.start_s + (k + 0.5) * (end - chunk.start_s) / count, 6) for k in range(count))


Packets = list[tuple[float, int, bool]]  # the source's (pts, bytes, keyframe), presentation order


def typical_starts(packets: Packets, chunk: Chunk, info: SourceInfo, config: PipelineConfig,
                   chunks: int) -> tuple[float, ...] | None:
    """The source keyframes (output timeline) whose next frames are most like the chunk's in
    size, one in each equal part of it: the source's own encoder has told how hard each moment
    is, so the windows are taken where the chunk is typical, not where a shot happens to start
    still. None where the chunk has fewer keyframes than windows with a window's room."""
    origin = info.video.origin_s
    frames = config.auto.frames
    end = chunk.end_s if chunk.end_s is not None else info.duration_s
    sizes = [size for pts, size, key in packets if not key and chunk.start_s - 1e-6 <= pts - origin < end]
    count = window_count(config, chunks)
    if not sizes:
        return None
    typical = max(sum(sizes) / len(sizes), 1.0)
    scored = []  # (how far from typical, output time)
    for i, (pts, _, key) in enumerate(packets):
        after = [size for _, size, k in packets[i + 1: i + frames] if not k]
        if key and chunk.start_s - 1e-6 <= pts - origin and len(after) == frames - 1:
            scored.append((abs(math.log(max(sum(after) / len(after), 1.0) / typical)), round(pts - origin, 6)))
    if len(scored) < count:
        return None
    part = (end - chunk.start_s) / count
    chosen: list[float] = []
    for k in range(count):
        here = [c for c in scored if chunk.start_s + k * part <= c[1] < chunk.start_s + (k + 1) * part and c[1] not in chosen]
        pool = here or [c for c in scored if c[1] not in chosen]
        chosen.append(min(pool)[1])
    return tuple(sorted(chosen))


def _gop_frames(info: SourceInfo, config: PipelineConfig) -> int:
    return max(1, round(config.gop_s * max(info.video.fps, 1.0)))


CELLS = 3  # the picture is scored a ninth at a time: a 3x3 grid's cells in turn


def _cell(info: SourceInfo, number: int) -> tuple[int, int, int, int]:
    """Window `number`'s cell of the display picture: width, height, x, y (even sizes). The
    order visits the rows and columns alternately (0, 4, 8, 1, 5, ...): a few windows already
    spread over the picture."""
    width, height = info.video.display_width, info.video.display_height
    w, h = max(2, width // (2 * CELLS) * 2), max(2, height // (2 * CELLS) * 2)
    slot = number % (CELLS * CELLS)
    row, column = slot % CELLS, (slot // CELLS + slot) % CELLS
    return w, h, column * (width - w) // (CELLS - 1) // 2 * 2, row * (height - h) // (CELLS - 1) // 2 * 2


def analysis_args(
    source: Source, chunk: Chunk, info: SourceInfo, config: PipelineConfig, trials: tuple[Rendition, ...],
    scratch: Path, starts: tuple[float, ...],
) -> list[str]:
    """The main ffmpeg: decode the windows, write the scorer's reference (each window's quarter)
    and every trial encode (`trial_<rendition>_<crf>.mp4`)."""
    video = info.video
    frames = config.auto.frames
    parts: list[Any] = []
    if starts is None:
        parts = [_chunk_start_window(source, chunk, info, frames)]
    for start in starts or ():
        options: dict[str, Any] = {**source.input_options(), "noautorotate": None, "threads": 1}
        # The frames from the keyframe the seek lands on (not trimmed to `start`: no decoding
        # of frames that are not used).
        # (A hair after `start`: where it is a keyframe's own time, rounding cannot land before it.)
        options.update({"ss": f"{video.origin_s + start + BOUNDARY_EPSILON_S:.6f}", "seek_timestamp": 1,
                        "noaccurate_seek": None})
        stream = ff.input(source.url, **options)[str(video.stream_index)]
        stream = picture_chain(stream, info).filter("trim", end_frame=frames).filter("setpts", "PTS-STARTPTS")
        parts.append(stream)
    joined = parts[0] if len(parts) == 1 else ff.concat(*parts, v=1, a=0)
    # Frame numbers from here on: window k is frames k*frames .. (k+1)*frames - 1.
    joined = joined.filter("settb", SCORE_TIME_BASE).filter("setpts", "N")
    copies = joined.filter_multi_output("split", 1 + len(trials))
    reference = _scored_runs(copies[0].filter("scale", video.display_width, video.display_height, flags="bicubic")
                           .filter("format", "yuv420p").filter("setsar", 1), info, len(parts), frames, chunk.index * len(parts))
    nodes = [ff.output(reference, str(scratch / "reference.nut"), f="nut", fps_mode="passthrough", **{"c:v": "rawvideo"})]
    single = config.with_changes(encoder_threads=1)
    for i, rendition in enumerate(trials):
        scaled = scale_chain(copies[1 + i], rendition).filter_multi_output("split", len(config.auto.crfs))
        for j, crf in enumerate(config.auto.crfs):
            options = encoder_options(rendition, info, single, crf=crf, capped=False)
            options.update({"force_key_frames": f"expr:eq(mod(n,{frames}),0)", "fps_mode": "passthrough",
                            "f": "mp4", "movflags": "+frag_keyframe+empty_moov+default_base_moof"})
            nodes.append(ff.output(scaled[j], str(_trial_path(scratch, rendition, crf)), **options))
    return ff.merge_outputs(*nodes).global_args("-copyts", "-loglevel", "level+verbose", "-filter_threads", "1").get_args()


def _chunk_start_window(source: Source, chunk: Chunk, info: SourceInfo, frames: int):
    video = info.video
    options: dict[str, Any] = {**source.input_options(), "noautorotate": None, "threads": 1}
    if chunk.seek_s is not None:
        options.update({"ss": f"{chunk.seek_s:.6f}", "seek_timestamp": 1, "noaccurate_seek": None})
    stream = ff.input(source.url, **options)[str(video.stream_index)].filter("setpts", f"PTS-{video.origin_s:.6f}/TB")
    if chunk.start_s > 0:
        stream = stream.filter("trim", start=f"{chunk.start_s - BOUNDARY_EPSILON_S:.6f}")
    return picture_chain(stream, info).filter("trim", end_frame=frames).filter("setpts", "PTS-STARTPTS")


SCORED_RUN = 5  # frames of each window fed to VMAF: the middle 3 count (motion needs both neighbours)
GOLDEN = 0.6180339887498949


def run_offset(window: int, frames: int) -> int:
    """Where window number `window`'s scored run starts in it: a place that varies from window
    to window over the whole window (after its keyframe): quality and cost change along a GOP."""
    return 1 + int((window * GOLDEN) % 1.0 * (frames - SCORED_RUN))


def _scored_runs(stream, info: SourceInfo, windows: int, frames: int, first_window: int = 0):
    """Each window's scored run, cropped to its cell of the picture, one after the other."""
    copies = stream.filter_multi_output("split", windows) if windows > 1 else [stream]
    parts = []
    for k in range(windows):
        w, h, x, y = _cell(info, first_window + k)
        start = k * frames + run_offset(first_window + k, frames)
        parts.append(copies[k].filter("trim", start_frame=start, end_frame=start + SCORED_RUN)
                     .filter("setpts", "PTS-STARTPTS").filter("crop", w, h, x, y))
    joined = parts[0] if windows == 1 else ff.concat(*parts, v=1, a=0)
    return joined.filter("settb", SCORE_TIME_BASE).filter("setpts", "N")


def _trial_path(scratch: Path, rendition: Rendition, crf: float) -> Path:
    return scratch / f"trial_{rendition.name}_{crf:g}.mp4"


def score_args(info: SourceInfo, config: PipelineConfig, trials: tuple[Rendition, ...], windows: int,
               first_window: int, scratch: Path) -> list[str]:
    """The scorer: every trial scaled up to the display size, quartered like the reference, VMAF."""
    width, height = info.video.display_width, info.video.display_height
    points = [(r, crf) for r in trials for crf in config.auto.crfs]
    references = ff.input(str(scratch / "reference.nut"), threads=1)["0"].filter_multi_output("split", len(points))
    outputs = []
    for i, (rendition, crf) in enumerate(points):
        distorted = (
            ff.input(str(_trial_path(scratch, rendition, crf)), threads=1)["0"]
            .filter("settb", SCORE_TIME_BASE).filter("setpts", "N")
            .filter("scale", width, height, flags="bicubic").filter("format", "yuv420p").filter("setsar", 1)
        )
        distorted = _scored_runs(distorted, info, windows, config.auto.frames, first_window)
        paired = references[i].filter("setsar", 1).filter("settb", SCORE_TIME_BASE).filter("setpts", "N")
        scored = ff.filter([distorted, paired], "libvmaf", log_fmt="json", n_threads=1,
                           log_path=str(scratch / f"vmaf_{rendition.name}_{crf:g}.json"))
        outputs.append(ff.output(scored, "-", f="null"))
    # One thread per decoder and filter: a few frames each, where threads cost more than they give.
    return ff.merge_outputs(*outputs).global_args("-loglevel", "error", "-filter_threads", "1").get_args()


def analyse_chunk(
    source: Source, chunk: Chunk, info: SourceInfo, config: PipelineConfig, *, scratch: Path, chunks: int,
) -> ChunkAnalysis:
    """Trial-encode a chunk's windows at every candidate size and rate factor and score them."""
    started_at, started = time.time(), time.monotonic()
    scratch.mkdir(parents=True, exist_ok=True)
    trials = candidates(info, config)
    origin = info.video.origin_s
    end = chunk.end_s if chunk.end_s is not None else info.duration_s
    packets, reads = probe.packet_sizes(source, info, origin + chunk.start_s, origin + end)
    sought = typical_starts(packets, chunk, info, config, chunks) or window_starts(chunk, info, config, chunks)
    frames = config.auto.frames
    for attempt in (sought, None):
        # Where a seek inside the chunk gives fewer frames than a window (a container without an
        # index can land past them), the one window the encoder's own seek gives.
        windows = len(attempt) if attempt is not None else 1
        first_window = chunk.index * windows
        try:
            encoded = run_ffmpeg(analysis_args(source, chunk, info, config, trials, scratch, attempt))
            sizes = _frame_sizes(scratch, trials, config)
            got = min((len(frame_sizes) for frame_sizes in sizes.values()), default=0)
            if got < windows * frames:
                problem = f"its windows gave {got} frames of {windows * frames}"
            else:
                scored = run_scorer(score_args(info, config, trials, windows, first_window, scratch))
                break
        except FfmpegFailed as failure:
            if failure.crashed:
                raise failure.as_tool_crash(f"analysing {chunk.name}") from None
            problem = str(failure)
        if attempt is None:
            raise PipelineError(ErrorCode.ENCODE_FAILED, f"analysing {chunk.name} failed: {problem}")
    starts = attempt or (chunk.start_s,)
    gop = _gop_frames(info, config)
    fps = max(info.video.fps, 1.0)
    spread = _spread(packets, chunk, info, starts, end, frames)
    points = []
    for rendition in trials:
        for crf in config.auto.crfs:
            rates = []
            for k in range(windows):
                window = sizes[rendition.name, crf][k * frames:(k + 1) * frames]
                gop_bytes = window[0] + (gop - 1) * spread * sum(window[1:]) / (frames - 1)
                rates.append(gop_bytes * 8 / (gop / fps) / 1000)
            vmaf = _middle_scores(scratch / f"vmaf_{rendition.name}_{crf:g}.json", windows)
            points.append(TrialPoint(rendition.name, crf, sum(rates) / len(rates), vmaf))
    io = reads + io_stats(encoded)
    figures = StageFigures(
        wall_s=time.monotonic() - started, cpu_s=io.cpu_s + scored.stats.cpu_s, bytes_read=io.bytes_read,
        requests=io.requests, max_rss_mb=max(encoded.stats.max_rss_mb, scored.stats.max_rss_mb),
    )
    return ChunkAnalysis(chunk.index, end - chunk.start_s, windows, windows * frames, tuple(points), figures,
                         started_at, time.time(), spread=spread)


# Never below 1: a cap under the rung's natural rate would crush its quality (the scaled sizes
# of a screen recording scroll at a cost the source's own frames do not show), a loose one only
# lets a peak through.
SPREAD_LIMITS = (1.0, 4.0)


def _spread(packets: Packets, chunk: Chunk, info: SourceInfo, starts: tuple[float, ...], end: float,
            frames: int) -> float:
    """How the chunk's source frames compare in size with its windows' (the frames after their
    keyframes), from the source's packet sizes (demuxed, not decoded): the source's own
    encoder spent more bits where the chunk moves more and less where it is still. The trial
    rates' non-key frames are scaled by this ratio (clamped to SPREAD_LIMITS; 1 where the
    source says nothing)."""
    origin = info.video.origin_s
    inside = [size for pts, size, key in packets if not key and origin + chunk.start_s - 1e-6 <= pts < origin + end]
    sampled = []
    for start in starts:
        keys = [i for i, (pts, _, key) in enumerate(packets) if key and pts <= origin + start + 1e-6]
        if keys:
            sampled += [size for _, size, key in packets[keys[-1] + 1: keys[-1] + frames] if not key]
    if not inside or not sampled or sum(sampled) <= 0:
        return 1.0
    ratio = (sum(inside) / len(inside)) / (sum(sampled) / len(sampled))
    return min(SPREAD_LIMITS[1], max(SPREAD_LIMITS[0], ratio))


def _frame_sizes(scratch: Path, trials: tuple[Rendition, ...], config: PipelineConfig) -> dict[tuple[str, float], list[int]]:
    """Each trial encode's frame sizes in presentation order (none for one that is missing or
    that ffmpeg left unfinished: it holds no whole window)."""
    sizes = {}
    for rendition in trials:
        for crf in config.auto.crfs:
            path = _trial_path(scratch, rendition, crf)
            try:
                samples = fmp4.read_track(path).samples if path.exists() else []
            except Exception:  # noqa: BLE001
                samples = []
            sizes[rendition.name, crf] = [s.size for s in sorted(samples, key=lambda s: s.presentation)]
    return sizes


def _middle_scores(log: Path, windows: int) -> tuple[float, ...]:
    """Each run's frames but its first and last (their motion feature lacks a neighbour)."""
    scores = [frame["metrics"]["vmaf"] for frame in json.loads(log.read_text())["frames"]]
    return tuple(s for i, s in enumerate(scores[: windows * SCORED_RUN]) if 0 < i % SCORED_RUN < SCORED_RUN - 1)
