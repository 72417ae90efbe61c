"""A fitted ladder's second look, after the encode map: what missed is encoded again.

The fit predicts each rung's rate and quality from a few frames a chunk; the encoders then
measure both, every segment's size and VMAF on sampled frames. Two misses are mended, each
by encoding again only the chunk-rungs concerned (one rung of one chunk is one rung's branch
of that chunk's encode, no audio, no thumbnails):

- **quality**: a rung whose measured VMAF is under its target (by the encoders' sampled
  scores, within `quality_slack`, by more than one standard error) is encoded again in every
  chunk at a lower rate factor, by what the title's curve says `quality_aim` above the target
  needs;
- **peaks**: a chunk whose segment peaks above `peak_limit` times the rung's average (the
  average it will have once the peaks are cut, found by iterating) is encoded again at the
  rate factor that brings that segment to `peak_aim` times it.

Both are mended through the rate factor, from the title's curve for the rung's size (how
fast rate and VMAF move with it); the VBV cap is the rung's own rule (`maxrate_ratio` and
`bufsize_ratio`), now on the measured average. A cap tight enough to hold a segment to its
share was tried first and measured worse: x264's VBV plans ahead conservatively, and a
buffer that holds one 4 s segment's excess cost the Big Buck Bunny sample's 720p rung 1.3
VMAF on the whole rung and its second rung 6.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

from vtp.core.config import PipelineConfig
from vtp.core.encode import ChunkResult, SegmentFacts
from vtp.core.ladder import Curve
from vtp.core.manifest import StageFigures
from vtp.core.plan import ChunkRates, ChunkRework, JobPlan, Rendition, RungRework

MIN_CRF = 10.0
MAX_CRF_STEP = 8.0  # how far one rework moves a rate factor
MIN_SLOPE = 0.3  # VMAF per rate factor step, at least (a flat curve would ask for any step)
ITERATIONS = 8


@dataclass(frozen=True)
class _Segment:
    chunk: int
    seconds: float
    bits: float


def plan_rework(plan: JobPlan, results: list[ChunkResult], config: PipelineConfig) -> tuple[ChunkRework, ...]:
    """The chunk-rungs of a fitted ladder to encode again (none for a fixed ladder)."""
    if not plan.fit or plan.fit.get("mode") != "auto":
        return ()
    results = sorted(results, key=lambda r: r.index)
    chosen: dict[int, list[RungRework]] = {}
    for rendition in plan.renditions:
        for index, rung in _rung_rework(rendition, plan, results, config).items():
            chosen.setdefault(index, []).append(rung)
    return tuple(ChunkRework(index, tuple(rungs)) for index, rungs in sorted(chosen.items()))


def _rung_rework(rendition: Rendition, plan: JobPlan, results: list[ChunkResult],
                 config: PipelineConfig) -> dict[int, RungRework]:
    """Peaks first (a chunk's rate factor raised until its highest segment fits), then quality
    (every chunk's lowered by the same step, which keeps their segments' proportions)."""
    auto = config.auto
    segments = _segments(results, rendition.name)
    seconds = sum(s.seconds for s in segments)
    if not segments or seconds <= 0:
        return {}
    curve = _curve(plan, rendition)
    crfs = {r.index: (r.rates.crf.get(rendition.name, rendition.crf) if r.rates else rendition.crf) for r in results}
    lengths = {index: sum(s.seconds for s in segments if s.chunk == index) for index in crfs}
    capped = _peaks(segments, sum(s.bits for s in segments) / seconds, auto.peak_limit, auto.peak_aim)
    average = _average_after(segments, capped, auto.peak_aim)
    raise_by, reasons = {}, {}
    for index in capped:
        peak = max(s.bits / s.seconds for s in segments if s.chunk == index)
        raise_by[index] = _rate_step(curve, crfs[index], auto.peak_aim * average / peak)
        reasons[index] = f"a segment at {peak / average:.2f}x the rung's average"
    lower_by, ratio = 0.0, 1.0
    measured, error = _measured_vmaf(results, rendition.name)
    target = rendition.target_vmaf
    if measured is not None and target is not None:
        slope = _slope(curve, rendition.crf)
        expected = measured - slope * sum(raise_by.get(i, 0.0) * lengths[i] for i in crfs) / seconds
        # On evidence, not on noise: a short title has one scored frame a segment, and a few
        # frames can read points off the whole rung. Under its target means under it by more
        # than one standard error of the sampling. Every chunk is lowered by the same step:
        # one chunk's few frames are too few to step it alone (tried: the Big Buck Bunny
        # sample's chunk read 92.3 on 2 frames, was lowered 8 steps and made a 1.67x peak).
        if expected + error < target + auto.quality_slack:
            lower_by, ratio = _quality_step(curve, rendition.crf, target + auto.quality_aim - expected)
            why = f"VMAF {measured:.1f} (+-{error:.1f}) under its target {target:g}"
            if expected < measured - 0.05:
                why += f", {expected:.1f} once its peaks are cut"
            reasons = {index: "; ".join(filter(None, (reasons.get(index), why))) for index in crfs}
    # The rung's cap from its average as it will be.
    average *= ratio
    maxrate = max(1, math.ceil(auto.maxrate_ratio * average / 1000))
    bufsize = max(1, math.ceil(auto.bufsize_ratio * average / 1000))
    level = _level_idc(results[0].video[rendition.name].codec)
    return {
        index: RungRework(rendition.name,
                          round(max(MIN_CRF, crfs[index] + raise_by.get(index, 0.0) - lower_by), 1),
                          maxrate, bufsize, reason, level)
        for index, reason in sorted(reasons.items())
    }


def _segments(results: list[ChunkResult], name: str) -> list[_Segment]:
    """Every segment of the rung: its chunk, duration (start to next start, as published), bits."""
    entries: list[tuple[int, SegmentFacts, int, int]] = []
    for result in results:
        track = result.video.get(name)
        if track is None:
            return []
        entries += [(result.index, s, track.timescale, track.end) for s in track.segments]
    found = []
    for i, (chunk, facts, scale, end) in enumerate(entries):
        next_start = entries[i + 1][1].start if i + 1 < len(entries) else end
        found.append(_Segment(chunk, max(next_start - facts.start, 0) / scale, facts.bytes * 8.0))
    return [s for s in found if s.seconds > 0]


def _level_idc(codec: str) -> int:
    """The level of an 'avc1.PPCCLL' codec string (x264 sets it from the cap: kept as it was)."""
    try:
        return int(codec.split(".")[1][4:6], 16)
    except (IndexError, ValueError):
        return 0


def _measured_vmaf(results: list[ChunkResult], name: str) -> tuple[float | None, float]:
    """The rung's VMAF as the manifest reports it (the mean of every scored frame), and the
    standard error of that mean (0 from fewer than 2 frames)."""
    scores = [v for r in results if r.quality and name in r.quality for v in r.quality[name].vmaf]
    if not scores:
        return None, 0.0
    error = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else 0.0
    return statistics.fmean(scores), error


def _curve(plan: JobPlan, rendition: Rendition) -> Curve | None:
    fit = plan.fit or {}
    size = next((r.get("size", r["name"]) for r in fit.get("rungs", []) if r["name"] == rendition.name), rendition.name)
    points = fit.get("curves", {}).get(size)
    if not points or len(points) < 2:
        return None
    return Curve(tuple(float(p[0]) for p in points), tuple(float(p[1]) for p in points),
                 tuple(float(p[2]) for p in points))


def _slope(curve: Curve | None, crf: float) -> float:
    """VMAF lost per step of rate factor about `crf` (the title's curve for the rung's size)."""
    if curve is None:
        return 1.0
    return max(MIN_SLOPE, (curve.vmaf_at(crf - 1) - curve.vmaf_at(crf + 1)) / 2)


def _quality_step(curve: Curve | None, crf: float, wanted: float) -> tuple[float, float]:
    """How far to lower the rate factor for `wanted` more VMAF, and the rate's growth for it."""
    step = round(min(MAX_CRF_STEP, wanted / _slope(curve, crf)), 1)
    if curve is None:
        return step, 2 ** (step / 6)
    return step, curve.kbps_at(crf - step) / max(curve.kbps_at(crf), 1e-6)


def _rate_step(curve: Curve | None, crf: float, ratio: float) -> float:
    """How far to raise the rate factor to scale the rate by `ratio` (< 1): x264's rate halves
    about every 6 steps; the curve says how fast for this title and size."""
    if curve is None:
        return round(min(MAX_CRF_STEP, -6 * math.log2(max(ratio, 1e-3))), 1)
    step = 0.0
    while step < MAX_CRF_STEP and curve.kbps_at(crf + step) > ratio * curve.kbps_at(crf):
        step += 0.1
    return round(step, 1)


def _peaks(segments: list[_Segment], average: float, limit: float, aim: float) -> set[int]:
    """The chunks to cap: those with a segment over `limit` times the rung's average as it will
    be once they are capped (capping lowers the average, which can raise others over it)."""
    capped: set[int] = set()
    for _ in range(ITERATIONS):
        after = _average_after(segments, capped, aim, average)
        over = {s.chunk for s in segments if s.chunk not in capped and s.bits / s.seconds > limit * 0.97 * after}
        if not over:
            break
        capped |= over
    return capped


def _average_after(segments: list[_Segment], capped: set[int], aim: float, average: float | None = None) -> float:
    """The rung's average once the `capped` chunks' segments are held to `aim` times it."""
    seconds = sum(s.seconds for s in segments)
    estimate = average if average is not None else sum(s.bits for s in segments) / seconds
    for _ in range(ITERATIONS):
        bits = sum(min(s.bits, aim * estimate * s.seconds) if s.chunk in capped else s.bits for s in segments)
        estimate = bits / seconds
    return estimate


def apply_rework(result: ChunkResult, redo: ChunkResult, rework: ChunkRework) -> ChunkResult:
    """The chunk's result with the reworked rungs' segments, scores and rate factors, and the
    rework's own record (its decision, what it cost, when it ran)."""
    crf = {**(result.rates.crf if result.rates else {}), **{r.name: r.crf for r in rework.rungs}}
    return dataclasses.replace(
        result,
        video={**result.video, **redo.video},
        quality={**(result.quality or {}), **(redo.quality or {})} or None,
        rates=ChunkRates(result.index, crf, result.rates.basis if result.rates else "title"),
        rework=rework, rework_figures=redo.figures, rework_started_at=redo.started_at,
        rework_ended_at=redo.ended_at,
    )


def rework_summary(results: list[ChunkResult]) -> dict[str, Any]:
    """The manifest's `ladder.rework`: each chunk-rung encoded again and why, and its cost."""
    reworked = sorted((r for r in results if r.rework), key=lambda r: r.index)
    figures = sum((r.rework_figures for r in reworked if r.rework_figures), StageFigures())
    return {
        "chunk_rungs": sum(len(r.rework.rungs) for r in reworked if r.rework),
        "items": [{"chunk": r.index, **rung.to_dict()} for r in reworked if r.rework for rung in r.rework.rungs],
        "cpu_s": round(figures.cpu_s, 3),
        "wall_s": round(figures.wall_s, 3),
    }
