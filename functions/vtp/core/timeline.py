"""The job's timeline: one bar per stage run (the split, each chunk's encoder, the merge),
from the facts each recorded where it ran, and the critical path marked on it."""

from __future__ import annotations

from dataclasses import replace

from vtp.core.analysis import ChunkAnalysis
from vtp.core.encode import ChunkResult
from vtp.core.manifest import JobTimeline, StageFigures, TimelineBar


def job_timeline(
    *,
    started_at: float,
    split: StageFigures,
    results: list[ChunkResult],
    merge: StageFigures | None = None,
    merge_started_at: float | None = None,
    split_worker: str = "",
    merge_worker: str = "",
    split_cold_start: bool | None = None,
    merge_cold_start: bool | None = None,
    analyses: tuple[ChunkAnalysis, ...] = (),
    fit: StageFigures | None = None,
    fit_started_at: float | None = None,
    fit_worker: str = "",
) -> JobTimeline:
    """`started_at`, `merge_started_at`: epoch seconds. The critical path is the split, the
    encoder that ended last (the map waits for it), and the merge. Without a merge (a job that
    failed before it), the bars up to the failure."""
    bars = [TimelineBar("split", "split", 0.0, split.wall_s, worker=split_worker, memory_mb=split.memory_mb,
                        cold_start=split_cold_start)]
    last_analysis = max(analyses, key=lambda a: a.ended_at, default=None)
    for analysis in sorted(analyses, key=lambda a: a.index):
        bars.append(TimelineBar(
            "analyse", f"analyse {analysis.index}", analysis.started_at - started_at, analysis.ended_at - started_at,
            chunk=analysis.index, worker=analysis.worker, memory_mb=analysis.figures.memory_mb,
            critical=merge is not None and analysis is last_analysis,
        ))
    if fit is not None and fit_started_at is not None:
        start = fit_started_at - started_at
        bars.append(TimelineBar("fit", "fit ladder", start, start + fit.wall_s, worker=fit_worker,
                                memory_mb=fit.memory_mb, critical=merge is not None))
    last = max(results, key=lambda r: r.ended_at, default=None)
    for result in sorted(results, key=lambda r: r.index):
        bars.append(TimelineBar(
            "encode", f"chunk {result.index}", result.started_at - started_at, result.ended_at - started_at,
            chunk=result.index, wait_s=result.wait_s, cold_start=result.cold_start, attempt=result.attempt,
            worker=result.worker, memory_mb=result.figures.memory_mb, critical=merge is not None and result is last,
        ))
    if merge is not None and merge_started_at is not None:
        start = merge_started_at - started_at
        bars.append(TimelineBar("merge", "merge", start, start + merge.wall_s, worker=merge_worker,
                                memory_mb=merge.memory_mb, cold_start=merge_cold_start, critical=True))
        bars[0] = replace(bars[0], critical=True)
    return JobTimeline(started_at, tuple(bars))

