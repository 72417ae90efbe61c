"""Fit a ladder to a title from its chunks' analysis (vtp.core.analysis).

For every candidate size, the title's curve: bit rate and VMAF at each trial rate factor
(the chunks' figures weighted by their length). Between trial points the curve is linear in
the rate factor for VMAF and for the logarithm of the rate (x264's rate halves about every 6
steps), beyond them extended by the nearest segment: `EXTEND_BELOW` steps under the lowest
trial factor, only `EXTEND_ABOVE` over the highest (past it a picture can fall off a cliff:
12 s of scrolling text at 1080p measured VMAF 94.8 at 34 and 75.3 at 40, where the line
through 26 and 34 said 87).

The rungs, from the top: for each quality target (the top one, then `vmaf_step` lower each,
down to `min_vmaf`; with `at_least_fixed`, never under what the fixed ladder's rung of the
same rank is predicted to make), every candidate no larger than the rung above reaches it at
some rate factor; the cheapest reaches it on the convex hull of all sizes' curves and becomes
the rung (a size can hold two rungs: a screen recording is cheaper at its own size, at a
higher rate factor, than scaled down, where its sharp edges become costly detail).
A rung must cost at most `1 / min_rate_step` of the rung above (else it adds too little:
dropped; `min_floor_step` for a rung held up to the fixed ladder's floor), and at most its
size's cap (else it is made at the cap, below its target). Each rung's peak is capped (VBR:
maxrate and bufsize from its fitted rate, or from the hardest analysed chunk's predicted
rate where that is higher).

Per chunk, each rung's rate factor is the one that chunk's own analysis needs for the rung's
target, drawn towards the rung's (`chunk_weight`) and kept within `max_chunk_offset`: a
chunk that is easy to encode gets a higher factor, a hard one a lower, within the cap.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from vtp.core.analysis import ChunkAnalysis, TrialPoint, candidates
from vtp.core.config import AutoLadder, PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.plan import ChunkRates, JobPlan, Rendition, plan_ladder
from vtp.core.probe import SourceInfo

EXTEND_BELOW = 6.0  # how far under the trial rate factors a curve is extended (VMAF nears its ceiling slowly)
EXTEND_ABOVE = 2.0  # and how far over them
STEP = 0.1  # rate factors are searched, and set, to a tenth


@dataclass(frozen=True)
class Curve:
    """One size's quality and rate against the rate factor."""

    crf: tuple[float, ...]  # ascending
    kbps: tuple[float, ...]
    vmaf: tuple[float, ...]

    def _at(self, values: tuple[float, ...], crf: float) -> float:
        xs = self.crf
        i = 0 if crf <= xs[0] else len(xs) - 2 if crf >= xs[-1] else max(k for k in range(len(xs) - 1) if xs[k] <= crf)
        x0, x1, y0, y1 = xs[i], xs[i + 1], values[i], values[i + 1]
        return y0 + (y1 - y0) * (crf - x0) / (x1 - x0)

    def vmaf_at(self, crf: float) -> float:
        return min(100.0, max(0.0, self._at(self.vmaf, crf)))

    def kbps_at(self, crf: float) -> float:
        return math.exp(self._at(tuple(math.log(max(k, 1e-3)) for k in self.kbps), crf))

    @property
    def span(self) -> tuple[float, float]:
        return max(0.0, self.crf[0] - EXTEND_BELOW), min(51.0, self.crf[-1] + EXTEND_ABOVE)

    def crf_for_vmaf(self, target: float) -> float | None:
        """The highest rate factor (fewest bits) whose VMAF reaches `target`; None: none does."""
        low, high = self.span
        crf = high
        while crf >= low - 1e-9:
            if self.vmaf_at(crf) >= target:
                return round(crf, 1)
            crf -= STEP
        return None

    def crf_for_kbps(self, cap: float) -> float:
        """The lowest rate factor (most bits) whose rate stays within `cap`."""
        low, high = self.span
        crf = low
        while crf < high and self.kbps_at(crf) > cap:
            crf += STEP
        return round(crf, 1)


def curve_of(points: list[TrialPoint], weights: list[float] | None = None) -> Curve:
    """The points of one size (several chunks' points: averaged with `weights`)."""
    weights = weights or [1.0] * len(points)
    by_crf: dict[float, list[tuple[TrialPoint, float]]] = {}
    for point, weight in zip(points, weights):
        by_crf.setdefault(point.crf, []).append((point, weight))
    crfs = sorted(by_crf)
    kbps, vmaf = [], []
    for crf in crfs:
        group = [(p, w) for p, w in by_crf[crf] if p.vmaf]
        total = sum(w for _, w in group) or 1.0
        kbps.append(sum(p.kbps * w for p, w in group) / total)
        vmaf.append(sum(p.vmaf_mean * w for p, w in group) / total)
    return Curve(tuple(crfs), tuple(kbps), tuple(vmaf))


@dataclass(frozen=True)
class FittedRung:
    rendition: Rendition
    size: str  # the candidate it was made from (its curve in the fit's `curves`)
    target_vmaf: float
    predicted_vmaf: float
    capped: bool  # made at its size's cap, below its target

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.rendition.name, "size": self.size, "width": self.rendition.width, "height": self.rendition.height,
                "target_vmaf": self.target_vmaf, "predicted_vmaf": round(self.predicted_vmaf, 2),
                "predicted_kbps": self.rendition.bitrate_kbps, "crf": self.rendition.crf,
                "maxrate_kbps": self.rendition.maxrate_kbps, "capped": self.capped}


def fit_ladder(info: SourceInfo, plan: JobPlan, config: PipelineConfig, analyses: list[ChunkAnalysis]) -> JobPlan:
    """The plan with the fitted rungs, each chunk's rate factors and how they were chosen (`fit`)."""
    auto = config.auto
    sizes = {r.name: r for r in candidates(info, config)}
    usable = [a for a in analyses if a.points]
    if not usable:
        raise PipelineError(ErrorCode.ENCODE_FAILED, "the ladder's analysis measured nothing")
    title = {
        name: curve_of([p for a in usable for p in a.points if p.rendition == name],
                       [a.duration_s for a in usable for p in a.points if p.rendition == name])
        for name in sizes
    }
    floors = _fixed_floors(plan_ladder(info, config.ladder), title) if auto.at_least_fixed else []
    rungs: list[FittedRung] = []
    dropped: list[dict[str, Any]] = []
    step_target = auto.top_vmaf
    while step_target >= auto.min_vmaf - 1e-9 and len(rungs) < auto.max_rungs:
        above = rungs[-1] if rungs else None
        target = max(step_target, floors[len(rungs)]) if len(rungs) < len(floors) else step_target
        choice = _cheapest(target, sizes, title, config, below=above.rendition.height if above else None,
                           top=above is None, above_all=rungs)
        if choice is None:
            # No size reaches this target within its cap: a lower target may be reached.
            dropped.append({"target_vmaf": target, "name": None, "kbps": None,
                            "reason": "no size reaches it within its cap"})
        elif above is not None and above.rendition.bitrate_kbps < (step := _rate_step(target, step_target, auto)) * choice.rendition.bitrate_kbps:
            dropped.append({"target_vmaf": target, "name": choice.rendition.name, "kbps": choice.rendition.bitrate_kbps,
                            "reason": f"saves less than {step:g}x over {above.rendition.name}"})
        else:
            rungs.append(choice)
        step_target = round(step_target - auto.vmaf_step, 3)
    if not rungs:
        raise PipelineError(ErrorCode.ENCODE_FAILED, "no rung of the fitted ladder reaches any quality target")
    rates = tuple(_chunk_rates(a, rungs, config) for a in sorted(usable, key=lambda a: a.index))
    rungs = [_capped_for_hardest(rung, usable, rates, config) for rung in rungs]
    renditions = tuple(r.rendition for r in rungs)
    fit = {
        "mode": "auto",
        "top_vmaf": auto.top_vmaf,
        "rungs": [r.to_dict() for r in rungs],
        "dropped": dropped,
        "curves": {name: [[c, round(k, 1), round(v, 2)] for c, k, v in zip(curve.crf, curve.kbps, curve.vmaf)]
                   for name, curve in title.items()},
        "analysis": _analysis_summary(usable),
    }
    return JobPlan(renditions=renditions, chunks=plan.chunks, rates=rates, fit=fit)


def _rate_step(target: float, step_target: float, auto: AutoLadder) -> float:
    """How much a rung must save over the one above. A rung held up to the fixed ladder's
    floor keeps that promise down to `min_floor_step`: where the fixed ladder's second rung
    costs more than its top (text scaled down), the rung that matches it sits close below
    the top in rate, and dropping it would leave that rank far under the fixed ladder."""
    return auto.min_floor_step if target > step_target + 1e-9 else auto.min_rate_step


def _fixed_floors(fixed: tuple[Rendition, ...], title: dict[str, Curve]) -> list[float]:
    """The quality the analysis predicts for each rung of the fixed ladder (as planned for this
    source), in rank order; a size the analysis did not try ends the list."""
    floors = []
    for rendition in fixed:
        if rendition.name not in title:
            break
        floors.append(round(title[rendition.name].vmaf_at(rendition.crf), 2))
    return floors


def _cheapest(target: float, sizes: dict[str, Rendition], title: dict[str, Curve], config: PipelineConfig, *,
              below: int | None, top: bool, above_all: list[FittedRung]) -> FittedRung | None:
    """The cheapest candidate no larger than `below` that reaches `target` within its cap. The
    top rung, where none does: the best any size makes at its cap."""
    options = []
    for name, size in sizes.items():
        if below is not None and size.height > below:
            continue
        if sum(1 for rung in above_all if rung.size == name) >= config.auto.max_rungs_per_size:
            continue
        curve = title[name]
        cap = config.auto.caps_kbps.get(_box_height(size), math.inf)
        crf = curve.crf_for_vmaf(target)
        capped = crf is None or curve.kbps_at(crf) > cap
        if capped:
            if not top:
                continue
            crf = curve.crf_for_kbps(cap) if cap < math.inf else curve.span[0]
        options.append((capped, curve.kbps_at(crf), -curve.vmaf_at(crf), name, crf))
    if not options:
        return None
    # Reaching the target first, then the fewest bits; where none reaches it, the best quality.
    reaching = [o for o in options if not o[0]]
    capped, kbps, minus_vmaf, name, crf = min(reaching, key=lambda o: o[1]) if reaching else min(options, key=lambda o: o[2])
    return FittedRung(_rung(sizes[name], _free_name(name, {r.rendition.name for r in above_all}), crf, kbps, target, config), name, target,
                      -minus_vmaf, capped)


def _free_name(size: str, taken: set[str]) -> str:
    """'1080p', or for a second rung of that size '1080p-2' (names are the tracks' folders)."""
    number = 1
    name = size
    while name in taken:
        number += 1
        name = f"{size}-{number}"
    return name


def _box_height(size: Rendition) -> int:
    """The known size a candidate was made for ('720p': 720), whatever the source's shape."""
    return int(size.name.rstrip("p"))


def _rung(size: Rendition, name: str, crf: float, kbps: float, target: float, config: PipelineConfig) -> Rendition:
    return Rendition(
        name, size.width, size.height, round(kbps), round(crf, 1), size.sample_aspect, target_vmaf=target,
        maxrate_kbps=math.ceil(kbps * config.auto.maxrate_ratio), bufsize_kbps=math.ceil(kbps * config.auto.bufsize_ratio),
    )


def _chunk_rates(analysis: ChunkAnalysis, rungs: list[FittedRung], config: PipelineConfig) -> ChunkRates:
    auto = config.auto
    crfs = {}
    for rung in rungs:
        rendition = rung.rendition
        own = [p for p in analysis.points if p.rendition == rung.size and p.vmaf]
        wanted = curve_of(own).crf_for_vmaf(rung.target_vmaf) if len(own) >= 2 else None
        if wanted is None:
            offset = -auto.max_chunk_offset  # out of the chunk's reach: as many bits as allowed
        else:
            offset = max(-auto.max_chunk_offset, min(auto.max_chunk_offset, auto.chunk_weight * (wanted - rendition.crf)))
        crfs[rendition.name] = round(rendition.crf + offset, 1)
    return ChunkRates(analysis.index, crfs, "chunk")


def _capped_for_hardest(rung: FittedRung, analyses: list[ChunkAnalysis], rates: tuple[ChunkRates, ...],
                        config: PipelineConfig) -> FittedRung:
    """The rung with its cap raised to `hard_chunk_headroom` times the rate the hardest analysed
    chunk is predicted to need at its own rate factor, where that is over the cap from the
    average: a title whose parts differ (a screen recording's still and scrolling parts) is
    not crushed where it is hard (measured: VMAF 46 instead of 71 on a scrolling 720p chunk
    capped at 1.5x the title's average); the rework then evens the peaks segment by segment."""
    rendition = rung.rendition
    crfs = {r.index: r.crf.get(rendition.name, rendition.crf) for r in rates}
    needs = [curve_of(own).kbps_at(crfs.get(a.index, rendition.crf))
             for a in analyses if len(own := [p for p in a.points if p.rendition == rung.size and p.vmaf]) >= 2]
    maxrate = math.ceil(config.auto.hard_chunk_headroom * max(needs, default=0.0))
    if maxrate <= rendition.maxrate_kbps:
        return rung
    bufsize = math.ceil(maxrate * config.auto.bufsize_ratio / config.auto.maxrate_ratio)
    return dataclasses.replace(rung, rendition=dataclasses.replace(rendition, maxrate_kbps=maxrate, bufsize_kbps=bufsize))


def _analysis_summary(analyses: list[ChunkAnalysis]) -> dict[str, Any]:
    return {
        "chunks": len(analyses),
        "windows": sum(a.windows for a in analyses),
        "frames": sum(a.frames for a in analyses),
        "cpu_s": round(sum(a.figures.cpu_s for a in analyses), 3),
        "wall_s": round(sum(a.figures.wall_s for a in analyses), 3),
    }
