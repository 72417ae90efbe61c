"""A job's stages, shared by the local runner and the Lambdas.

- `inspect`: size, header, first frames, keyframes at the chunk boundaries -> the plan
  (the splitter's work: reads a few ranged pieces of the source, never all of it);
- `analyse_chunk` and `fit_ladder` (a fitted ladder only): a few frames of each chunk tried
  at every candidate size and rate factor -> the rungs and each chunk's rate factors (the
  analysis map's work, then the fitting step's);
- `encode_chunk`: one chunk's time range of the source -> its final segments, written
  under the job's output prefix, and its facts (the encoders' work);
- `plan_rework` and `rework_chunk` (a fitted ladder only): the chunks' facts -> the
  chunk-rungs that missed their quality target or peaked too high, each encoded again (the
  rework step's work, then the rework map's: vtp.core.rework);
- `publish`: the chunks' facts -> checks, playlists, MPD, thumbnail track, manifest (the
  merger's work: no media).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import FIRST_EXCEPTION, Executor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from vtp.core import encode as encode_stage
from vtp.core import probe, validate
from vtp.core.analysis import ChunkAnalysis, analyse_chunk
from vtp.core.config import LadderMode, PipelineConfig
from vtp.core.encode import ChunkResult
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core import ladder, rework
from vtp.core.manifest import StageFigures
from vtp.core.plan import Chunk, ChunkRework, JobPlan, plan_job
from vtp.core.probe import SourceInfo
from vtp.core.publish import publish
from vtp.core.source import Source
from vtp.core.storage import ObjectStore
from vtp.core.tools import FfmpegFailed, IoStats, vmaf_binary

__all__ = [
    "inspect", "needs_analysis", "analysis_chunks", "analyse_chunk", "fit", "ChunkAnalysis", "encode_chunk",
    "plan_rework", "rework_chunk", "apply_rework", "ChunkRework", "publish", "run_all", "stage_errors",
]


@contextmanager
def stage_errors(code: ErrorCode, what: str) -> Iterator[None]:
    """Turn an ffmpeg failure into a PipelineError naming the stage (a crash is the tool's)."""
    try:
        yield
    except FfmpegFailed as failure:
        if failure.crashed:
            raise failure.as_tool_crash(what) from failure
        raise PipelineError(code, f"{what} failed: {failure}") from failure


def inspect(source: Source, config: PipelineConfig, *, workers: int = 8) -> tuple[SourceInfo, JobPlan, StageFigures]:
    """Probe and validate, cheapest check first; plan the chunks. Returns what it cost too."""
    started = time.monotonic()
    limits = config.limits
    validate.check_size(source.size_bytes, limits)
    header = probe.read_header(source)
    validate.check_header(header, limits)
    opening = probe.opening_frames(source, header)
    validate.check_opening(opening, limits)
    info = probe.describe(header, opening, source.size_bytes)
    validate.check_info(info, limits)
    find_keyframes, spent = probe.keyframe_finder(source, info, workers=workers)
    plan = plan_job(info, config, find_keyframes)
    io = sum(spent, header.io + opening.io)
    assert isinstance(io, IoStats)
    figures = StageFigures(
        wall_s=time.monotonic() - started, cpu_s=io.cpu_s, bytes_read=io.bytes_read, requests=io.requests
    )
    return info, plan, figures


def needs_analysis(config: PipelineConfig) -> bool:
    """A fitted ladder is analysed first; it needs the scorer (without one: the fixed ladder)."""
    return config.ladder_mode is LadderMode.AUTO and vmaf_binary() is not None


def analysis_chunks(plan: JobPlan, config: PipelineConfig) -> tuple[Chunk, ...]:
    """The chunks analysed (each gets its own rate factors; the others the rung's): one in every
    `analyse_every`, spread over the title: from each equal part of it, its longest chunk,
    nearest the part's middle (a short tail chunk is a poor sample of a title)."""
    chunks = plan.chunks
    parts = max(1, -(-len(chunks) // max(1, config.auto.analyse_every)))
    chosen = []
    for part in range(parts):
        low, high = part * len(chunks) / parts, (part + 1) * len(chunks) / parts
        members = [c for c in chunks if low <= c.index + 0.5 < high]
        middle = (low + high) / 2
        longest = max(_length(c) for c in members)
        chosen.append(min((c for c in members if _length(c) >= longest - 1e-6), key=lambda c: abs(c.index + 0.5 - middle)))
    return tuple(chosen)


def _length(chunk: Chunk) -> float:
    """A chunk's length; the last one's is not in the plan (it runs to the end): counted as none,
    so a longer title's tail chunk is analysed only where it is the whole part."""
    return chunk.end_s - chunk.start_s if chunk.end_s is not None else 0.0


def fit(info: SourceInfo, plan: JobPlan, config: PipelineConfig, analyses: list[ChunkAnalysis], *,
        memory_mb: int = 0, worker: str = "") -> JobPlan:
    """The fitted ladder (`ladder.fit_ladder`), with what fitting it cost in `plan.fit["step"]`."""
    started_at, started, cpu = time.time(), time.monotonic(), time.process_time()
    fitted = ladder.fit_ladder(info, plan, config, analyses)
    step = StageFigures(wall_s=time.monotonic() - started, cpu_s=time.process_time() - cpu, memory_mb=memory_mb)
    step_figures = {**step.to_dict(), "started_at": started_at, "worker": worker}
    return dataclasses.replace(fitted, fit={**(fitted.fit or {}), "step": step_figures})


def encode_chunk(
    source: Source,
    chunk: Chunk,
    info: SourceInfo,
    plan: JobPlan,
    config: PipelineConfig,
    *,
    scratch: Path,
    output: ObjectStore,
    prefix: str = "",
) -> ChunkResult:
    return encode_stage.encode_chunk(
        source, chunk, plan.renditions, info, config, scratch=scratch, output=output, prefix=prefix,
        rates=plan.rates_for(chunk.index) if plan.rates else None,
    )


plan_rework = rework.plan_rework
apply_rework = rework.apply_rework


def rework_chunk(
    source: Source,
    chunk: Chunk,
    info: SourceInfo,
    plan: JobPlan,
    config: PipelineConfig,
    chunk_rework: ChunkRework,
    *,
    scratch: Path,
    output: ObjectStore,
    prefix: str = "",
) -> ChunkResult:
    """Encode the reworked rungs of one chunk again (video only), over its earlier segments."""
    return encode_stage.encode_chunk(
        source, chunk, chunk_rework.renditions(plan), info, config, scratch=scratch, output=output, prefix=prefix,
        rates=chunk_rework.rates(), video_only=True,
    )


def run_all(pool: Executor, jobs: list[Callable[[], Any]], on_done: Callable[[Any], None] = lambda result: None) -> list[Any]:
    """Run jobs on the pool, results in order; the first failure cancels what has not started and is raised."""
    futures = [pool.submit(job) for job in jobs]
    for future in futures:
        future.add_done_callback(lambda f: on_done(f.result()) if not f.cancelled() and f.exception() is None else None)
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    for future in done:
        if future.exception() is not None:
            for other in pending:
                other.cancel()
            wait(pending)
            raise future.exception()  # type: ignore[misc]
    return [future.result() for future in futures]
