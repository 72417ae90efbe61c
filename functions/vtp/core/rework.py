"""A fitted ladder's second look, after the encode map: what missed is encoded again.

The fit predicts each rung's rate and quality from a few frames a chunk; the encoders then
measure both, every segment's size and VMAF on sampled frames. Two misses are mended by
encoding again only the chunk-rungs concerned (one rung of one chunk is one rung's branch of
that chunk's encode, no audio, no thumbnails), each segment of it at its own rate factor
(the chunk's, and x264 zones for the segments that differ):

- **peaks**: no segment may be over `peak_limit` times the rung's average; segments are
  moved until they are within `peak_aim` times it;
- **quality**: a rung whose measured VMAF is under its target (by the encoders' sampled
  scores, within `quality_slack`, by more than one standard error) is raised until the
  model says `quality_aim` over it.

Both are one allocation per rung, in half steps of rate factor, on a model from the title's
curve for the rung's size (how fast rate and VMAF move with the rate factor; past the
highest trial factor VMAF falls at least `CLIFF_SLOPE` a step): the highest segment is
raised (fewer bits); while the rung is short of quality, or its peaks cannot be brought down
further, the cheapest segment is lowered (more bits: where bits are cheapest, as shot-based
encoding spends them, and a higher average brings the peaks closer to it). A move counts
where it lowers the segments' total excess over the limit: several segments can peak alike.
Segments, not whole chunks: a chunk's segments differ (a screen recording scrolls in one and
stands still in the next), and moving the chunk moves its peak and its average together.

The VBV cap is the rung's own (from the fit), or its rule (`maxrate_ratio`, `bufsize_ratio`)
on the average the model expects where that is higher. A cap tight enough to hold a segment
to its share was tried first and measured worse: x264's VBV plans ahead conservatively, and
a buffer that holds one 4 s segment's excess cost the Big Buck Bunny sample's 720p rung 1.3
VMAF and its second rung 6; on a screen recording a cap at or under the segment's share took 1 to 3 % off
its size (the buffer's start lets a 4 s burst through), where one step of rate factor took 8 %.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import statistics
from dataclasses import dataclass

from vtp.core.config import PipelineConfig
from vtp.core.encode import ChunkResult
from vtp.core.ladder import Curve
from vtp.core.plan import ChunkRates, ChunkRework, JobPlan, Rendition, RungRework, Zone
from vtp.core.publish import timeline

MIN_CRF = 10.0
MAX_CRF = 51.0
MAX_CRF_STEP = 8.0  # how far one rework moves a segment's rate factor
MIN_SLOPE = 0.3  # VMAF per rate factor step, at least (a flat curve would ask for any step)
# Past the highest trial factor, VMAF is taken to fall at least this fast per step (the
# curve's straight extension is too hopeful there: a screen recording's 1080p measured 4).
CLIFF_SLOPE = 3.0
OVERRUN = 2.0  # a segment may be raised this far past the curve's span (its own quality, not the rung's)
STEP = 0.5
STEPS = 1000
BATCH = 32  # segments are moved a 32nd of the rung at a time (one at a time under 64)


@dataclass(frozen=True)
class _Segment:
    chunk: int
    seconds: float
    bits: float
    first_frame: int  # in its chunk's encode
    frames: int


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
    segments = _segments(results, rendition.name)
    if not segments:
        return {}
    crfs = {r.index: (r.rates.crf.get(rendition.name, rendition.crf) if r.rates else rendition.crf) for r in results}
    measured, error = _measured_vmaf(results, rendition.name)
    allocation = _Allocation(segments, crfs, _curve(plan, rendition), measured, error, rendition, config)
    reasons = allocation.run()
    mean = allocation.average()
    auto = config.auto
    # Not under the rung's own cap (the hardest chunk's headroom): a rework moves rate factors;
    # the cap only keeps a burst within the buffer.
    maxrate = max(rendition.maxrate_kbps, math.ceil(auto.maxrate_ratio * mean / 1000))
    bufsize = max(rendition.bufsize_kbps, math.ceil(auto.bufsize_ratio * mean / 1000))
    level = _level_idc(results[0].video[rendition.name].codec)
    reworks = {}
    for chunk, reason in sorted(reasons.items()):
        crf, zones = allocation.chunk_rates(chunk)
        reworks[chunk] = RungRework(rendition.name, crf, maxrate, bufsize, reason, level, zones)
    return reworks


class _Allocation:
    """One rung's segments' moves of rate factor (+ raises it: fewer bits; - lowers it), on the
    model of the module's docstring: rates scale by the title's curve, VMAF by its slope.
    Each segment's rate and the rung's totals are kept up to date move by move, and the
    highest are raised and the cheapest lowered in batches of a 32nd of the segments: a
    three-hour title's 2,700 segments are planned in seconds (the ladder function has 512 MB
    and 5 minutes)."""

    def __init__(self, segments: list[_Segment], crfs: dict[int, float], curve: Curve | None,
                 measured: float | None, error: float, rendition: Rendition, config: PipelineConfig):
        self.segments, self.crfs, self.curve = segments, crfs, curve
        self.measured, self.error, self.target = measured, error, rendition.target_vmaf
        self.auto = config.auto
        self.seconds = sum(s.seconds for s in segments)
        self.slope = _slope(curve, rendition.crf)
        self.last_trial = curve.crf[-1] if curve else MAX_CRF
        self.ceiling = curve.span[1] + OVERRUN if curve else MAX_CRF
        self.batch = max(1, len(segments) // BATCH)
        self.moves = [0.0] * len(segments)
        self.rates = [s.bits / s.seconds for s in segments]
        self.bits = sum(s.bits for s in segments)  # after the moves
        self.lost = 0.0  # VMAF-seconds the moves cost
        self.ratios: dict[tuple[float, float], float] = {}
        self.wants_quality = False
        self.peaked: dict[int, float] = {}  # segment: its ratio when first found over the limit

    def crf(self, j: int) -> float:
        return self.crfs[self.segments[j].chunk]

    def move(self, j: int, step: float) -> None:
        segment = self.segments[j]
        self.bits -= self.rates[j] * segment.seconds
        self.lost -= self.loss(j) * segment.seconds
        self.moves[j] += step
        key = (self.crf(j), self.moves[j])
        if key not in self.ratios:
            self.ratios[key] = _rate_ratio(self.curve, *key)
        self.rates[j] = segment.bits / segment.seconds * self.ratios[key]
        self.bits += self.rates[j] * segment.seconds
        self.lost += self.loss(j) * segment.seconds

    def average(self) -> float:
        return self.bits / self.seconds

    def loss(self, j: int) -> float:
        """VMAF the segment's move costs (negative: gains): the slope, steeper past the last trial factor."""
        crf, move = self.crf(j), self.moves[j]
        past = max(0.0, crf + move - max(crf, self.last_trial))
        return self.slope * move + max(0.0, CLIFF_SLOPE - self.slope) * past

    def quality(self) -> float:
        return (self.measured or 0.0) - self.lost / self.seconds

    def peak(self) -> tuple[float, int]:
        top = max(range(len(self.segments)), key=self.rates.__getitem__)
        return self.rates[top] / self.average(), top

    def movable(self, j: int, step: float) -> bool:
        moved = self.moves[j] + step
        # Not far past the curve's span: where nothing was measured a picture can fall off a cliff.
        return -MAX_CRF_STEP <= moved <= MAX_CRF_STEP and MIN_CRF <= self.crf(j) + moved <= self.ceiling

    def highest(self, limit: float) -> list[int]:
        """The segments of the highest rates (a batch) over `limit` times the average that can
        still be raised."""
        over = limit * self.average()
        top = heapq.nlargest(self.batch, range(len(self.segments)), key=self.rates.__getitem__)
        return [j for j in top if self.rates[j] > over and self.movable(j, STEP)]

    def cheapest(self, but: int | None = None) -> list[int]:
        """The segments of the lowest rates (a batch): where bits are cheapest."""
        options = (j for j in range(len(self.segments)) if j != but and self.movable(j, -STEP))
        return heapq.nsmallest(self.batch, options, key=self.rates.__getitem__)

    def excess(self, limit: float) -> float:
        """How far the segments are over `limit` times the average, in all (several segments
        can peak alike: cutting one does not lower the highest, but it is still a step)."""
        over = limit * self.average()
        return sum((rate - over) * s.seconds for rate, s in zip(self.rates, self.segments) if rate > over)

    def lowers_peaks(self, chosen: list[int], step: float, limit: float) -> bool:
        """Move the `chosen` segments by `step` if that lowers the segments' excess over `limit`."""
        if not chosen or not all(self.movable(j, step) for j in chosen):
            return False
        before = self.excess(limit)
        for j in chosen:
            self.move(j, step)
        if self.excess(limit) < before * (1 - 1e-4):
            return True
        for j in chosen:
            self.move(j, -step)
        return False

    def short_of_quality(self) -> bool:
        """Under the target by more than the sampling's error (as measured, or as the model
        expects once peaks are cut); once so, until the model says `quality_aim` over it."""
        if self.measured is None or self.target is None:
            return False
        self.wants_quality = self.wants_quality or self.quality() + self.error < self.target + self.auto.quality_slack
        return self.wants_quality and self.quality() < self.target + self.auto.quality_aim

    def run(self) -> dict[int, str]:
        """Move in half steps until no segment peaks and the quality is reached, or nothing
        helps; the chunks with a moved segment and why."""
        for _ in range(STEPS):
            ratio, top = self.peak()
            limit = self.auto.peak_aim if self.peaked else self.auto.peak_limit * 0.97
            if ratio > limit:
                self.peaked.setdefault(top, ratio)
                highest = {j: self.rates[j] / self.average() for j in self.highest(limit)}
                if self.lowers_peaks(list(highest), STEP, limit):
                    for j, over in highest.items():
                        self.peaked.setdefault(j, over)
                    continue
                if self.lowers_peaks(self.cheapest(but=top), -STEP, limit):
                    continue
            if self.short_of_quality():
                chosen = self.cheapest()
                for j in chosen:
                    self.move(j, -STEP)
                if chosen:
                    continue
            break
        reasons: dict[int, str] = {}
        for j, segment in enumerate(self.segments):
            if j in self.peaked and self.moves[j] > 0:
                highest = max(r for k, r in self.peaked.items() if self.segments[k].chunk == segment.chunk and self.moves[k] > 0)
                reasons[segment.chunk] = f"a segment at {highest:.2f}x the rung's average"
        for j, segment in enumerate(self.segments):
            if self.moves[j] < 0 and segment.chunk not in reasons:
                reasons[segment.chunk] = self._lowered_because()
        return reasons

    def chunk_rates(self, chunk: int) -> tuple[float, tuple[Zone, ...]]:
        """A chunk's new rate factor (its segments' most common one) and zones for the others."""
        mine = [j for j, s in enumerate(self.segments) if s.chunk == chunk]
        common = statistics.mode(sorted((self.moves[j] for j in mine), key=abs))
        crf = round(self.crfs[chunk] + common, 1)
        zones = tuple((self.segments[j].first_frame, self.segments[j].first_frame + self.segments[j].frames - 1,
                       round(self.crfs[chunk] + self.moves[j], 1)) for j in mine if self.moves[j] != common)
        return crf, zones

    def _lowered_because(self) -> str:
        if not self.wants_quality or self.measured is None or self.target is None:
            return "its segments are the cheapest: more bits bring the peaks nearer the average"
        said = f"VMAF {self.measured:.1f} (+-{self.error:.1f})"
        if self.measured + self.error < self.target + self.auto.quality_slack:
            return f"{said} under its target {self.target:g}"
        return f"{said}, under its target {self.target:g} once its peaks are cut"


def _segments(results: list[ChunkResult], name: str) -> list[_Segment]:
    """Every segment of the rung as published (publish.timeline: durations from start to
    start), each with its chunk and its frames in the chunk's encode."""
    if any(name not in r.video for r in results):
        return []
    placed = []  # (chunk, first frame, frames) per segment
    for r in results:
        first = 0
        for facts in r.video[name].segments:
            placed.append((r.index, first, facts.frames))
            first += facts.frames
    track = timeline(results, name)
    return [_Segment(chunk, s.duration / track.timescale, s.bytes * 8.0, first, frames)
            for (chunk, first, frames), s in zip(placed, track.segments) if s.duration > 0]


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


def _rate_ratio(curve: Curve | None, crf: float, move: float) -> float:
    """The rate at `crf + move` over the rate at `crf`: x264's rate halves about every 6 steps;
    the curve says how fast for this title and size."""
    if curve is None:
        return 2 ** (-move / 6)
    return curve.kbps_at(crf + move) / max(curve.kbps_at(crf), 1e-6)


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
