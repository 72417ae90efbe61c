"""A fitted ladder's second look, after the encode map: what missed is encoded again.

The fit predicts each rung's rate and quality from a few frames a chunk; the encoders then
measure both, every segment's size and VMAF on sampled frames. Two misses are mended, each
by encoding again only the chunk-rungs concerned (one rung of one chunk is one rung's branch
of that chunk's encode, no audio, no thumbnails):

- **quality**: a rung whose measured VMAF is under its target (by the encoders' sampled
  scores, within `quality_slack`) is encoded again in every chunk at a lower rate factor,
  by what the title's curve says `quality_aim` above the target needs;
- **peaks**: a chunk whose segment peaks above `peak_limit` times the rung's average (the
  average it will have once the peaks are cut, found by iterating) is encoded again with a
  cap that holds every segment to `peak_aim` times that average.

A cap on a segment's bits: x264's VBV lets no window of `d` seconds hold more than
`bufsize + maxrate * d` bits. So the cap is chosen per chunk from what it measured: `maxrate`
the chunk's own sustained rate where that is under the aim (a cap below it starves the chunk
for good, not just its peaks), `bufsize` the rest of the shortest segment's budget, and at
least the chunk's largest keyframe (a buffer smaller than a keyframe starves the keyframe,
and every frame predicted from it).
"""

from __future__ import annotations

import dataclasses
import math
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
MIN_SEGMENT_S = 0.5


@dataclass(frozen=True)
class _Segment:
    chunk: int
    seconds: float
    bits: float
    key_bits: float


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
    auto = config.auto
    segments = _segments(results, rendition.name)
    seconds = sum(s.seconds for s in segments)
    if not segments or seconds <= 0:
        return {}
    average = sum(s.bits for s in segments) / seconds
    crfs = {r.index: (r.rates.crf.get(rendition.name, rendition.crf) if r.rates else rendition.crf) for r in results}
    measured = _measured_vmaf(results, rendition.name)
    target = rendition.target_vmaf
    if measured is not None and target is not None and measured < target + auto.quality_slack:
        curve = _curve(plan, rendition)
        step, ratio = _quality_step(curve, rendition.crf, target + auto.quality_aim - measured)
        if step > 0:
            scaled = [_Segment(s.chunk, s.seconds, s.bits * ratio, s.key_bits * ratio) for s in segments]
            reason = f"VMAF {measured:.1f} under its target {target:g}"
            return {
                index: _rework(rendition.name, max(MIN_CRF, crfs[index] - step), scaled, index, average * ratio,
                               auto.peak_aim, reason)
                for index in crfs
            }
    capped = _peaks(segments, average, auto.peak_limit, auto.peak_aim)
    if not capped:
        return {}
    final = _average_after(segments, capped, auto.peak_aim)
    reworks = {}
    for index in sorted(capped):
        peak = max(s.bits / s.seconds for s in segments if s.chunk == index)
        reason = f"a segment at {peak / final:.2f}x the rung's average"
        reworks[index] = _rework(rendition.name, crfs[index], segments, index, final, auto.peak_aim, reason)
    return reworks


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
        found.append(_Segment(chunk, max(next_start - facts.start, 0) / scale, facts.bytes * 8.0, facts.key_bytes * 8.0))
    return [s for s in found if s.seconds > 0]


def _measured_vmaf(results: list[ChunkResult], name: str) -> float | None:
    """The rung's VMAF as the manifest reports it: the mean of every scored frame."""
    scores = [v for r in results if r.quality and name in r.quality for v in r.quality[name].vmaf]
    return sum(scores) / len(scores) if scores else None


def _curve(plan: JobPlan, rendition: Rendition) -> Curve | None:
    fit = plan.fit or {}
    size = next((r.get("size", r["name"]) for r in fit.get("rungs", []) if r["name"] == rendition.name), rendition.name)
    points = fit.get("curves", {}).get(size)
    if not points or len(points) < 2:
        return None
    return Curve(tuple(float(p[0]) for p in points), tuple(float(p[1]) for p in points),
                 tuple(float(p[2]) for p in points))


def _quality_step(curve: Curve | None, crf: float, wanted: float) -> tuple[float, float]:
    """How far to lower the rate factor for `wanted` more VMAF, and the rate's growth for it."""
    if curve is None:
        return min(MAX_CRF_STEP, wanted), 2 ** (min(MAX_CRF_STEP, wanted) / 6)
    slope = max(MIN_SLOPE, (curve.vmaf_at(crf - 1) - curve.vmaf_at(crf + 1)) / 2)
    step = round(min(MAX_CRF_STEP, wanted / slope), 1)
    return step, curve.kbps_at(crf - step) / max(curve.kbps_at(crf), 1e-6)


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


def _rework(name: str, crf: float, segments: list[_Segment], index: int, average: float, aim: float,
            reason: str) -> RungRework:
    """The chunk's cap: no segment over `aim` times `average` (see the module's docstring)."""
    own = [s for s in segments if s.chunk == index]
    limit = aim * average
    shortest = max(MIN_SEGMENT_S, min(s.seconds for s in own))
    sustained = sum(s.bits for s in own) / sum(s.seconds for s in own)
    key = max((s.key_bits for s in own), default=0.0)
    maxrate = min(limit, max(sustained, average))
    bufsize = (limit - maxrate) * shortest
    if bufsize < 1.1 * key:
        bufsize = 1.1 * key
        maxrate = limit - bufsize / shortest
    if maxrate < 0.4 * average:
        maxrate = 0.4 * average
        bufsize = (limit - maxrate) * shortest
    return RungRework(name, round(crf, 1), max(1, math.floor(maxrate / 1000)), max(1, math.floor(bufsize / 1000)),
                      reason)


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
