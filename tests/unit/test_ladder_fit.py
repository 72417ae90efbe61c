"""The ladder fit (vtp.core.ladder) and the analysis' window choice, on trial points given by
hand: each decision checked against its own arithmetic. (The analysis itself, with real
ffmpeg, is covered by the runner, quality, LocalStack and benchmark tests.)"""

from __future__ import annotations

import math

import pytest

from vtp.core.analysis import ChunkAnalysis, TrialPoint, candidates, typical_starts
from vtp.core.config import AutoLadder, PipelineConfig
from vtp.core.errors import PipelineError
from vtp.core.ladder import curve_of, fit_ladder
from vtp.core.manifest import StageFigures
from vtp.core.plan import Chunk, JobPlan
from vtp.core.probe import SourceInfo, VideoInfo

# The hull alone: the fixed ladder's floor (at_least_fixed) is checked in test_rework.py.
CONFIG = PipelineConfig(auto=AutoLadder(at_least_fixed=False))


def source(width: int = 1920, height: int = 1080, duration_s: float = 24.0) -> SourceInfo:
    video = VideoInfo(0, "h264", width, height, width, height, 0, "yuv420p", "progressive", "1/15360", "30",
                      False, 0.0, duration_s)
    return SourceInfo("mp4", 10_000_000, duration_s, video, None)


def points(name: str, rates: tuple[float, float, float], vmaf: tuple[float, float, float]) -> list[TrialPoint]:
    return [TrialPoint(name, crf, rate, (score,) * 3) for crf, rate, score in zip((18.0, 26.0, 34.0), rates, vmaf)]


# Rates and qualities shaped like a real title's: each size halves its rate in 8 steps; the
# larger sizes reach the top qualities, the smaller ones are cheaper at the low ones.
TITLE = [
    *points("1080p", (8000, 4000, 2000), (98, 92, 80)),
    *points("720p", (4500, 2250, 1125), (92, 86, 72)),
    *points("480p", (2000, 1000, 500), (84, 76, 60)),
    *points("360p", (1200, 600, 300), (76, 66, 50)),
]
CHUNKS = (Chunk(0, 0.0, 12.0, None), Chunk(1, 12.0, None, 12.0))


def analysis(index: int, trial: list[TrialPoint], duration_s: float = 12.0) -> ChunkAnalysis:
    return ChunkAnalysis(index, duration_s, 1, 8, tuple(trial), StageFigures(wall_s=1.0, cpu_s=2.0))


def test_curves_interpolate_linearly_in_the_rate_factor_and_the_log_of_the_rate():
    curve = curve_of(points("1080p", (8000, 4000, 2000), (98, 92, 80)))
    assert curve.vmaf_at(22.0) == pytest.approx(95.0)
    assert curve.kbps_at(22.0) == pytest.approx(8000 / math.sqrt(2))  # half way in log
    assert curve.vmaf_at(38.0) == pytest.approx(74.0)  # the last segment, extended
    # The highest rate factor reaching a target, to a tenth; none beyond what it can reach.
    assert curve.crf_for_vmaf(95.0) == pytest.approx(22.0)
    assert curve.crf_for_vmaf(99.9) == pytest.approx(15.4)  # extended below the trials, at most 6 steps
    # Above them at most 2: a low target is met there, over it (77), not trusted further out.
    assert curve.span == (12.0, 36.0) and curve.crf_for_vmaf(70.0) == 36.0
    assert curve.crf_for_vmaf(100.5) is None
    assert curve.kbps_at(curve.crf_for_kbps(3000.0)) <= 3000.0


def test_the_rungs_are_the_cheapest_sizes_reaching_each_target_on_the_hull():
    plan = fit_ladder(source(), JobPlan((), CHUNKS), CONFIG, [analysis(0, TITLE), analysis(1, TITLE)])
    rungs = plan.fit["rungs"]
    # 95: 1080p at CRF 22 (5,657 kbit/s); 720p only far below the trials (14: 6,364). 87:
    # 720p at 24.67 (2,514). 79: 480p at 23 (1,297), cheaper than 360p. 71: 480p again, at
    # 28.5 (805), cheaper than 360p at 22 (849), and 1.61x below 480p: kept. 63: 360p at
    # 27.5 (526). Five rungs: the most allowed, so 55 is not tried.
    assert [r["name"] for r in rungs] == ["1080p", "720p", "480p", "480p-2", "360p"]
    assert [r["size"] for r in rungs] == ["1080p", "720p", "480p", "480p", "360p"]
    assert [r["target_vmaf"] for r in rungs] == [95.0, 87.0, 79.0, 71.0, 63.0]
    assert rungs[0]["crf"] == pytest.approx(22.0)
    assert rungs[0]["predicted_kbps"] == round(8000 / math.sqrt(2))
    assert [r["crf"] for r in rungs[1:]] == pytest.approx([24.6, 23.0, 28.5, 27.5], abs=0.051)  # to a tenth
    assert plan.fit["dropped"] == []
    # Sizes never go up the ladder; each rung saves at least 1.5x over the one above.
    heights = [r.height for r in plan.renditions]
    assert heights == sorted(heights, reverse=True)
    rates = [r.bitrate_kbps for r in plan.renditions]
    assert all(a >= 1.5 * b for a, b in zip(rates, rates[1:]))
    # Capped VBR from the fitted rate.
    top = plan.renditions[0]
    assert top.maxrate_kbps == math.ceil(top.bitrate_kbps * CONFIG.auto.maxrate_ratio)
    assert top.bufsize_kbps == math.ceil(top.bitrate_kbps * CONFIG.auto.bufsize_ratio)
    assert plan.fit["analysis"] == {"chunks": 2, "windows": 2, "frames": 16, "cpu_s": 4.0, "wall_s": 2.0}


def test_a_chunk_gets_its_own_rate_factor_half_way_and_at_most_four_away():
    easy = [TrialPoint(p.rendition, p.crf, p.kbps / 2, tuple(v + 4 for v in p.vmaf)) for p in TITLE]
    hard = [TrialPoint(p.rendition, p.crf, p.kbps * 2, tuple(v - 30 for v in p.vmaf)) for p in TITLE]
    plan = fit_ladder(source(), JobPlan((), CHUNKS), CONFIG, [analysis(0, easy), analysis(1, hard)])
    top = plan.renditions[0]
    easy_crf, hard_crf = (plan.rates_for(i).crf[top.name] for i in (0, 1))
    assert plan.rates_for(0).basis == "chunk"
    assert easy_crf > top.crf > hard_crf
    assert hard_crf == pytest.approx(top.crf - CONFIG.auto.max_chunk_offset)  # out of its reach: the most allowed
    # The easy chunk reaches 95 at a higher factor; it moves half way there.
    own = curve_of([p for p in easy if p.rendition == top.name]).crf_for_vmaf(top.target_vmaf)
    step = min(CONFIG.auto.max_chunk_offset, CONFIG.auto.chunk_weight * (own - top.crf))
    assert easy_crf == pytest.approx(top.crf + step, abs=0.11)
    # A chunk that was not analysed takes the rung's own.
    assert plan.rates_for(7).basis == "title" and plan.rates_for(7).crf[top.name] == top.crf


def test_a_top_target_out_of_reach_is_made_at_the_cap_and_said_so():
    capped = PipelineConfig(auto=AutoLadder(caps_kbps={1080: 3000, 720: 3000, 480: 1000, 360: 1000}, at_least_fixed=False))
    plan = fit_ladder(source(), JobPlan((), CHUNKS), capped, [analysis(0, TITLE)])
    top = plan.fit["rungs"][0]
    # No size reaches 95 within its cap: the best quality within a cap is made, 720p (VMAF 88.5
    # at 3,000 against 1080p's 87.1 and 480p's 76 at 1,000).
    assert top["capped"] and top["name"] == "720p" and top["predicted_kbps"] <= 3000
    assert top["predicted_vmaf"] == pytest.approx(88.5, abs=0.1)


def test_nothing_measured_is_an_error_not_a_ladder():
    with pytest.raises(PipelineError, match="measured nothing"):
        fit_ladder(source(), JobPlan((), CHUNKS), CONFIG, [])


def test_candidates_never_exceed_the_source_and_small_sources_get_two():
    assert [c.name for c in candidates(source(), CONFIG)] == ["1080p", "720p", "480p", "360p"]
    assert [c.name for c in candidates(source(1280, 720), CONFIG)] == ["720p", "480p", "360p"]
    assert [c.name for c in candidates(source(640, 360), CONFIG)] == ["360p", "240p"]
    portrait = candidates(source(1080, 1920), CONFIG)
    assert (portrait[0].width, portrait[0].height) == (1080, 1920)


def test_windows_start_at_the_keyframes_most_typical_of_their_part_of_the_chunk():
    info = source(duration_s=12.0)
    frames = CONFIG.auto.frames
    packets: list[tuple[float, int, bool]] = []
    # Keyframes every 2 s; the frames after the one at 2 s are huge, at 8 s tiny; elsewhere 1,000 bytes.
    for k in range(6):
        t0 = 2.0 * k
        packets.append((t0, 50_000, True))
        size = {1: 9_000, 4: 100}.get(k, 1_000)
        packets += [(t0 + (i + 1) / 30, size, False) for i in range(59)]
    chunk = Chunk(0, 0.0, None, None)
    two = PipelineConfig(auto=AutoLadder(windows_per_chunk=2))
    assert typical_starts(packets, chunk, info, two, chunks=1) == (0.0, 6.0)  # 2 s and 8 s are not typical
    assert len(typical_starts(packets, chunk, info, CONFIG, chunks=1)) == 1
    # Fewer keyframes than windows: no choice to make (the caller seeks evenly instead).
    assert typical_starts(packets[: frames + 2], Chunk(0, 0.0, 0.5, None), info, two, chunks=1) is None
