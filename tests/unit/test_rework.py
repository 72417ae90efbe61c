"""The rework after the encode map (vtp.core.rework) on chunk facts given by hand: which
chunk-rungs are encoded again, at which rate factor and cap, and what the result then says.
(The rework's encodes, with real ffmpeg, are covered by the runner, quality and benchmark
tests.) Also the fit's choices that feed it: a size holding two rungs, the fixed ladder's
quality as a floor, and the analysed chunks spread over the title."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tests.unit.test_ladder_fit import CHUNKS, TITLE, analysis, points, source

from vtp.core import stages
from vtp.core.config import AutoLadder, PipelineConfig, Rung
from vtp.core.encode import ChunkResult, SegmentFacts, Thumbnails, TrackFacts, encoder_options
from vtp.core.ladder import Curve, curve_of, fit_ladder
from vtp.core.manifest import StageFigures
from vtp.core.plan import Chunk, ChunkRates, ChunkRework, JobPlan, Rendition, RungRework
from vtp.core.quality import RungScores
from vtp.core.publish import rework_summary
from vtp.core.rework import plan_rework

CONFIG = PipelineConfig()
SCALE = 90000
CURVE = [[18.0, 4000.0, 96.0], [26.0, 2000.0, 90.0], [34.0, 1000.0, 80.0]]  # 1 VMAF per step near 22-26


def fitted_plan(target: float = 87.0, crf: float = 24.0) -> JobPlan:
    rung = Rendition("720p", 1280, 720, 2000, crf, target_vmaf=target, maxrate_kbps=3000, bufsize_kbps=4000)
    fit = {"mode": "auto", "rungs": [{"name": "720p", "size": "720p"}], "curves": {"720p": CURVE}}
    chunks = tuple(Chunk(i, 12.0 * i, 12.0 * (i + 1), None) for i in range(4))
    return JobPlan((rung,), chunks, fit=fit)


def result(index: int, segment_kbits: tuple[float, ...], vmaf: float, crf: float = 24.0) -> ChunkResult:
    """A chunk of 4 s segments whose sizes give those rates, and its scored frames."""
    starts = [(3 * index + k) * 4 * SCALE for k in range(len(segment_kbits))]
    segments = tuple(SegmentFacts(start, 100, round(kbps * 1000 * 4 / 8)) for start, kbps in zip(starts, segment_kbits))
    track = TrackFacts(SCALE, "sha", "avc1.64001f", segments, starts[-1] + 4 * SCALE)
    return ChunkResult(
        index=index, start_s=12.0 * index, end_s=12.0 * (index + 1), video={"720p": track}, audio=None,
        thumbnails=Thumbnails(None, (), 160, 0), poster=None, next_frame=None, frames_decoded=300, preroll_s=0.0,
        figures=StageFigures(wall_s=10.0, cpu_s=20.0), quality={"720p": RungScores((vmaf,) * 5, (40.0,) * 5, (0.98,) * 5)},
        rates=ChunkRates(index, {"720p": crf}, "chunk"),
    )


def test_a_fixed_ladder_or_a_rung_on_its_target_without_peaks_is_left_alone():
    even = [result(i, (2000, 2100, 1900), 88.0) for i in range(4)]
    assert plan_rework(fitted_plan(), even, CONFIG) == ()
    assert plan_rework(JobPlan(fitted_plan().renditions, fitted_plan().chunks), even, CONFIG) == ()


def test_a_segment_that_peaks_is_encoded_again_at_a_higher_rate_factor_in_its_chunk():
    results = [result(i, (2000, 2000, 2000), 90.0) for i in range(3)] + [result(3, (2000, 4000, 2000), 90.0, crf=25.0)]
    [rework] = plan_rework(fitted_plan(), results, CONFIG)
    [rung] = rework.rungs
    assert rework.index == 3 and rung.name == "720p"
    assert rung.reason == f"a segment at {4000 / (26000 / 12):.2f}x the rung's average"
    # The curve halves the rate every 8 steps: the segment at 2^(-m/8) of its bits puts its peak
    # at 48000 g / (22000 + 4000 g) of the average, 1.35 at most from g = 0.697: m = 4.5 (half steps).
    g = 2 ** (-4.5 / 8)
    assert 48000 * g / (22000 + 4000 * g) <= 1.35 < 48000 * 2 ** (-4 / 8) / (22000 + 4000 * 2 ** (-4 / 8))
    # The chunk keeps its rate factor; the segment's frames (the second 100) get their own: x264 zones.
    assert rung.crf == 25.0 and rung.zones == ((100, 199, 29.5),)
    average = (22000 + 4000 * g) / 12
    assert rung.maxrate_kbps == math.ceil(1.5 * average) and rung.bufsize_kbps == math.ceil(2 * average)
    assert rung.level_idc == 0x1F  # kept from the first encode's codec string (avc1.64001f)
    # Zones travel with the rework's document and reach the encoder's x264 settings.
    assert RungRework.from_dict(rung.to_dict()) == rung
    [rendition] = rework.renditions(fitted_plan())
    options = encoder_options(rendition, source(), CONFIG, crf=rung.crf)
    assert options["crf"] == 25 and options["x264-params"].endswith(":zones=100,199,crf=29.5")


def segment_crfs(rung: RungRework, segments: int = 3, frames: int = 100) -> list[float]:
    """Each segment's rate factor in a reworked chunk: its zone's, else the chunk's."""
    zones = {first: crf for first, _, crf in rung.zones}
    return [zones.get(k * frames, rung.crf) for k in range(segments)]


def model_rates(rates: tuple[float, ...], moves: list[float]) -> list[float]:
    """The segments' rates after their moves, as the rework's model scales them (CURVE)."""
    curve = Curve(*(tuple(p[k] for p in CURVE) for k in range(3)))
    return [rate * curve.kbps_at(24.0 + move) / curve.kbps_at(24.0) for rate, move in zip(rates, moves)]


def test_a_rung_under_its_target_is_encoded_again_in_every_chunk_by_the_curves_step():
    results = [result(i, (2000, 2100, 1900), 84.0, crf=23.0 + i) for i in range(4)]
    reworks = plan_rework(fitted_plan(target=87.0), results, CONFIG)
    assert [r.index for r in reworks] == [0, 1, 2, 3]
    assert all(r.rungs[0].reason == "VMAF 84.0 (+-0.0) under its target 87" for r in reworks)
    # 87 + 1.5 - 84 = 4.5 VMAF at 0.75 a step about CRF 24 (90 at 26, 96 at 18): 6 steps lower
    # on average over the segments, the cheapest segments first (1900 lowered most, 2100 least).
    moves = [crf - (23.0 + r.index) for r in reworks for crf in segment_crfs(r.rungs[0])]
    assert sum(moves) / len(moves) == pytest.approx(-6.0)
    for r in reworks:
        low, mid, high = (crf - (23.0 + r.index) for crf in (segment_crfs(r.rungs[0])[k] for k in (2, 0, 1)))
        assert low <= mid <= high < 0
    # Its cap grows with the rate the curve gives the lower factors.
    average = sum(model_rates((2000, 2100, 1900) * 4, moves)) / 12
    assert reworks[0].rungs[0].maxrate_kbps == math.ceil(1.5 * average) > 3000


def test_a_rung_under_its_target_by_less_than_the_samplings_error_is_left_alone():
    # 10 frames: 5 at 90, 5 at 83: mean 86.5, standard error 1.17: 87.67 is not under 87.5.
    results = [result(0, (2000, 2000, 2000), 90.0), result(1, (2000, 2000, 2000), 83.0)]
    assert plan_rework(fitted_plan(target=87.0), results, CONFIG) == ()
    # The same mean from frames that agree is under it.
    same = [result(0, (2000, 2000, 2000), 86.5), result(1, (2000, 2000, 2000), 86.5)]
    assert [r.index for r in plan_rework(fitted_plan(target=87.0), same, CONFIG)] == [0, 1]


def test_a_peak_its_segments_most_move_cannot_bring_down_is_met_by_more_bits_where_they_are_cheapest():
    rates = (2000, 2000, 2000) * 3 + (2000, 6000, 2000)
    results = [result(i, rates[3 * i: 3 * i + 3], 90.0) for i in range(4)]
    reworks = {r.index: r.rungs[0] for r in plan_rework(fitted_plan(target=87.0), results, CONFIG)}
    # The segment at the most one rework moves it (8 steps: half its bits) still peaks at 1.44x:
    # the other segments, as cheap as each other, are given more bits (lower factors) in turn.
    assert segment_crfs(reworks[3])[1] == 24.0 + 8 and reworks[3].reason.startswith("a segment at 2.57x")
    moves = [crf - 24.0 for i in range(4) for crf in (segment_crfs(reworks[i]) if i in reworks else [24.0] * 3)]
    assert all(move < 0 for k, move in enumerate(moves) if k != 10)
    assert all(r.reason.startswith("its segments are the cheapest") for i, r in reworks.items() if i != 3)
    after = model_rates(rates, moves)
    assert max(after) / (sum(after) / 12) <= 1.35


def test_cutting_a_peak_that_would_take_the_rung_under_its_target_gives_the_cheapest_segments_more():
    # 71.6 is over 71 + 0.5; raising the peak segment for its peak costs a twelfth of the
    # title 0.75 VMAF a step: under it: the other segments are lowered until 72.5.
    results = [result(i, (2000, 2000, 2000), 71.6) for i in range(3)] + [result(3, (2000, 4000, 2000), 71.6)]
    reworks = {r.index: r.rungs[0] for r in plan_rework(fitted_plan(target=71.0), results, CONFIG)}
    assert segment_crfs(reworks[3])[1] > 24.0 and reworks[3].reason.startswith("a segment at")
    assert all(reworks[i].reason == "VMAF 71.6 (+-0.0), under its target 71 once its peaks are cut" for i in range(3))
    moves = [crf - 24.0 for i in range(4) for crf in segment_crfs(reworks[i])]
    assert 71.6 - 0.75 * sum(moves) / 12 >= 71.0 + 1.5
    assert all(move < 0 for k, move in enumerate(moves) if k != 10)


def test_a_single_chunks_peak_is_cut_by_its_own_segments_rate_factor():
    """Its other segments keep theirs: a zone holds the one that peaks."""
    [rework] = plan_rework(fitted_plan(), [result(0, (2000, 4000, 2000), 90.0)], CONFIG)
    [rung] = rework.rungs
    assert rung.crf == 24.0 and rung.zones == ((100, 199, 26.5),)
    after = model_rates((2000, 4000, 2000), [0.0, 2.5, 0.0])
    assert max(after) / (sum(after) / 3) <= 1.35


def test_no_segment_is_raised_far_past_the_curves_trial_factors():
    """Past the highest trial factor (34) a picture can fall off a cliff: a segment may go 2
    past the curve's span (36) at most."""
    rates = (2000, 2000, 2000) * 3 + (2000, 6000, 2000)
    results = [result(i, rates[3 * i: 3 * i + 3], 88.0, crf=35.0) for i in range(4)]
    reworks = {r.index: r.rungs[0] for r in plan_rework(fitted_plan(target=80.0, crf=35.0), results, CONFIG)}
    assert segment_crfs(reworks[3])[1] == 38.0
    assert all(r.reason.startswith(("a segment at", "its segments are the cheapest")) for r in reworks.values())


def test_past_the_trial_factors_the_model_counts_quality_falling_faster():
    """A peak segment raised from 35 to 38 costs 3 VMAF a step in the model (not the curve's
    straight 1.25): 9 on a twelfth of the title takes 81.2 under 80 + 0.5, so the rung's
    quality is bought back on the other segments."""
    rates = (2000, 2000, 2000) * 3 + (2000, 3600, 2000)
    results = [result(i, rates[3 * i: 3 * i + 3], 81.2, crf=35.0) for i in range(4)]
    reworks = {r.index: r.rungs[0] for r in plan_rework(fitted_plan(target=80.0, crf=35.0), results, CONFIG)}
    assert segment_crfs(reworks[3])[1] == 38.0 and reworks[3].reason.startswith("a segment at 1.69x")
    assert all(reworks[i].reason == "VMAF 81.2 (+-0.0), under its target 80 once its peaks are cut" for i in range(3))
    moves = [crf - 35.0 for i in range(4) for crf in segment_crfs(reworks[i])]
    gained = -1.25 * sum(m for m in moves if m < 0) / 12  # the curve's slope about 35, per segment
    assert 81.2 - 9 / 12 + gained >= 80.0 + 1.5


def test_a_three_hour_titles_rework_reaches_its_quality_in_batches():
    """2,700 segments: the cheapest are lowered a 32nd of the rung at a time, so the plan
    reaches the model's quality within its step limit (one segment a step would stop a
    fraction of the way there)."""
    rates = [(1500.0 + 7 * (i % 200), 2000.0, 2500.0 - 5 * (i % 100)) for i in range(900)]
    results = [result(i, rates[i], 84.0) for i in range(900)]
    plan = fitted_plan(target=87.0)
    plan = JobPlan(plan.renditions, tuple(Chunk(i, 12.0 * i, 12.0 * (i + 1), None) for i in range(900)), fit=plan.fit)
    reworks = plan_rework(plan, results, CONFIG)
    assert len(reworks) == 900
    moves = [crf - 24.0 for r in reworks for crf in segment_crfs(r.rungs[0])]
    # 87 + 1.5 - 84 at 0.75 a step: 6 steps lower on average, in batches of 84 half steps.
    assert -6.0 - 84 * 0.5 / 2700 <= sum(moves) / len(moves) <= -6.0


def test_a_three_hour_titles_peaks_are_cut_in_batches():
    """One chunk in ten with a segment at 2.2x: 90 peaks of 2,700 segments, raised a batch at
    a time, all within 1.35x of the average the model expects."""
    rates = [(2000.0, 4400.0 if i % 10 == 0 else 2000.0, 2000.0 + (i % 7)) for i in range(900)]
    results = [result(i, rates[i], 90.0) for i in range(900)]
    plan = fitted_plan(target=87.0)
    plan = JobPlan(plan.renditions, tuple(Chunk(i, 12.0 * i, 12.0 * (i + 1), None) for i in range(900)), fit=plan.fit)
    reworks = {r.index: r.rungs[0] for r in plan_rework(plan, results, CONFIG)}
    assert set(range(0, 900, 10)) <= set(reworks)
    moves = [crf - 24.0 for i in range(900) for crf in (segment_crfs(reworks[i]) if i in reworks else [24.0] * 3)]
    after = model_rates(tuple(rate for chunk in rates for rate in chunk), moves)
    assert max(after) / (sum(after) / len(after)) <= 1.35


def test_the_rework_is_applied_to_the_chunks_result_and_kept_in_it():
    original = result(0, (2000, 4000, 2000), 90.0)
    redo = result(0, (1500, 2600, 1500), 88.0, crf=27.0)
    work = ChunkRework(0, (RungRework("720p", 27.0, 3100, 4200, "a segment at 1.9x the rung's average"),))
    applied = stages.apply_rework(original, redo, work)
    assert applied.video["720p"].bytes == redo.video["720p"].bytes
    assert applied.quality["720p"].vmaf == (88.0,) * 5
    assert applied.rates.crf == {"720p": 27.0} and applied.rates.basis == "chunk"
    assert applied.rework == work and applied.rework_figures == redo.figures
    assert ChunkResult.from_dict(applied.to_dict()) == applied
    summary = rework_summary([applied, result(1, (2000,), 90.0)])
    assert summary["chunk_rungs"] == 1 and summary["items"][0]["chunk"] == 0 and summary["cpu_s"] == 20.0
    # The encode's renditions for it: the rung with this chunk's cap.
    plan = fitted_plan()
    [rendition] = work.renditions(plan)
    assert (rendition.crf, rendition.maxrate_kbps, rendition.bufsize_kbps) == (27.0, 3100, 4200)
    assert work.rates() == ChunkRates(0, {"720p": 27.0}, "rework")


def test_a_size_can_hold_two_rungs_where_it_is_the_cheapest_way_to_a_lower_target():
    # A screen recording: its own size stays cheap; scaled down it costs more than at 1080p.
    screen = [
        *points("1080p", (400, 200, 100), (99, 95, 88)),
        *points("720p", (900, 450, 225), (92, 84, 74)),
        *points("480p", (500, 250, 125), (80, 72, 62)),
        *points("360p", (300, 150, 75), (70, 60, 50)),
    ]
    plan = fit_ladder(source(), JobPlan((), CHUNKS), CONFIG, [analysis(0, screen)])
    names = [r.name for r in plan.renditions]
    assert names[:2] == ["1080p", "1080p-2"]
    assert plan.fit["rungs"][1]["size"] == "1080p" and plan.renditions[1].height == 1080
    assert len(set(names)) == len(names)


def test_a_size_holds_two_rungs_at_most():
    # Only 1080p reaches anything (the others read far too low): two rungs of it, then none.
    only = [*points("1080p", (400, 200, 100), (99, 95, 90)),
            *(p for size in ("720p", "480p", "360p") for p in points(size, (300, 150, 75), (40, 35, 30)))]
    plan = fit_ladder(source(), JobPlan((), CHUNKS), PipelineConfig(auto=AutoLadder(at_least_fixed=False)),
                      [analysis(0, only)])
    assert [r.name for r in plan.renditions] == ["1080p", "1080p-2"]
    assert {d["reason"] for d in plan.fit["dropped"]} == {"no size reaches it within its cap"}


def test_no_rung_is_aimed_under_the_fixed_ladders_rung_of_its_rank():
    fixed = (Rung("1080p", 1080, 5000, 20), Rung("720p", 720, 3000, 23))
    config = PipelineConfig(ladder=fixed)
    floored = fit_ladder(source(), JobPlan((), CHUNKS), config, [analysis(0, TITLE)])
    # TITLE's 1080p makes 96.5 at CRF 20, its 720p 88.25 at 23: over the targets 95 and 87.
    assert [r["target_vmaf"] for r in floored.fit["rungs"][:2]] == [96.5, 88.25]
    # Fitting again from the fitted plan (a retried step) gives the same ladder.
    assert fit_ladder(source(), floored, config, [analysis(0, TITLE)]).fit == floored.fit
    free = fit_ladder(source(), JobPlan((), CHUNKS), PipelineConfig(ladder=fixed, auto=AutoLadder(at_least_fixed=False)),
                      [analysis(0, TITLE)])
    assert [r["target_vmaf"] for r in free.fit["rungs"][:2]] == [95.0, 87.0]


def test_a_rung_held_up_to_the_fixed_ladders_floor_is_kept_closer_to_the_rung_above():
    """A screen recording: the fixed ladder's 720p costs more than its 1080p; the rung that
    matches it is a second 1080p only 1.35x under the top, kept (`min_floor_step` 1.2) where
    the floor holds it up, dropped (`min_rate_step` 1.5) where nothing does."""
    screen = [
        *points("1080p", (300, 260, 220), (99, 97.5, 91.5)),
        *points("720p", (700, 290, 120), (90, 86, 77)),
        *points("480p", (290, 105, 57), (80, 74, 59)),
        *points("360p", (250, 84, 40), (68, 60, 47)),
    ]
    fixed = (Rung("1080p", 1080, 5000, 20), Rung("720p", 720, 3000, 23))
    floored = fit_ladder(source(), JobPlan((), CHUNKS), PipelineConfig(ladder=fixed), [analysis(0, screen)])
    top, second = floored.fit["rungs"][:2]
    # 720p at CRF 23 is predicted 87.5: the second rung's target. 1080p reaches it at the
    # curve's ceiling (36: 90), 720p only at 23 (400 kbit/s, more than the top's).
    assert (top["name"], second["name"], second["target_vmaf"], second["crf"]) == ("1080p", "1080p-2", 87.5, 36.0)
    assert 1.2 <= top["predicted_kbps"] / second["predicted_kbps"] < 1.5
    free = fit_ladder(source(), JobPlan((), CHUNKS), PipelineConfig(ladder=fixed, auto=AutoLadder(at_least_fixed=False)),
                      [analysis(0, screen)])
    assert "1080p-2" not in [r["name"] for r in free.fit["rungs"]]
    assert {"target_vmaf": 87.0, "name": "1080p-2", "kbps": second["predicted_kbps"],
            "reason": "saves less than 1.5x over 1080p"} in free.fit["dropped"]


def test_a_rungs_cap_leaves_room_for_its_hardest_analysed_chunk():
    """Still and busy chunks (a screen recording's): the cap from the average would crush the
    busy one; it is at least 1.25x what that chunk is predicted to need."""
    def scaled(factor: float) -> list:
        return [dataclasses.replace(p, kbps=p.kbps * factor) for p in TITLE]

    plan = fit_ladder(source(), JobPlan((), CHUNKS), CONFIG, [analysis(0, scaled(0.2)), analysis(1, scaled(1.8))])
    top = plan.renditions[0]
    assert plan.rates_for(1).crf[top.name] == top.crf  # the same quality curve: the rung's factor
    hard = curve_of([p for p in scaled(1.8) if p.rendition == "1080p"]).kbps_at(top.crf)
    assert top.maxrate_kbps == math.ceil(1.25 * hard) > 1.5 * top.bitrate_kbps
    assert top.bufsize_kbps == math.ceil(top.maxrate_kbps * 2.0 / 1.5)
    assert plan.fit["rungs"][0]["maxrate_kbps"] == top.maxrate_kbps


@pytest.mark.parametrize(("count", "every", "expected"), [
    (1, 3, [0]), (2, 3, [0]), (5, 3, [1, 3]), (6, 3, [1, 4]), (7, 2, [0, 2, 4, 5]), (9, 3, [1, 4, 7]),
])
def test_the_analysed_chunks_are_spread_over_the_title_and_skip_a_short_tail(count, every, expected):
    chunks = tuple(Chunk(i, 12.0 * i, 12.0 * (i + 1) if i < count - 1 else None, None) for i in range(count))
    config = PipelineConfig(auto=AutoLadder(analyse_every=every))
    assert [c.index for c in stages.analysis_chunks(JobPlan((), chunks), config)] == expected


def test_a_chunk_encoded_again_under_another_cap_fits_with_the_others(clip, small_config, tmp_path):
    """With real ffmpeg: one chunk of two is encoded again (one rung, video only) under another
    rate factor and cap; its segments replace the first ones and the chunks still fit together
    (the same init: the muxer would write each cap into it)."""
    import dataclasses

    from vtp.core.publish import check_results
    from vtp.core.source import local_source
    from vtp.core.storage import FolderStore

    source = local_source(clip("silent"))
    config = dataclasses.replace(small_config, chunk_s=1.0, segment_s=1.0)
    info, plan, _ = stages.inspect(source, config)
    renditions = tuple(dataclasses.replace(r, target_vmaf=50.0, maxrate_kbps=300, bufsize_kbps=400) for r in plan.renditions)
    plan = JobPlan(renditions, plan.chunks, fit={"mode": "auto", "rungs": [], "curves": {}})
    assert len(plan.chunks) == 2
    out = FolderStore(tmp_path / "out")
    first = [stages.encode_chunk(source, c, info, plan, config, scratch=tmp_path / c.name, output=out) for c in plan.chunks]
    top = renditions[0].name
    level = int(first[1].video[top].codec[-2:], 16)
    work = ChunkRework(1, (RungRework(top, 20.0, 900, 1200, "by hand", level),))
    redo = stages.rework_chunk(source, plan.chunks[1], info, plan, config, work, scratch=tmp_path / "rework", output=out)
    assert set(redo.video) == {top} and redo.audio is None and redo.thumbnails.sprite is None
    applied = stages.apply_rework(first[1], redo, work)
    check_results([first[0], applied], plan)
    assert applied.video[top].init_sha256 == first[0].video[top].init_sha256
    assert applied.video[top].bytes > first[1].video[top].bytes  # CRF 20 under a wider cap: more bits
    for segment in applied.video[top].segments:
        assert (tmp_path / "out" / top / f"segment_{segment.start}.m4s").stat().st_size == segment.bytes
    assert applied.rates.crf[top] == 20.0 and applied.video[renditions[1].name] == first[1].video[renditions[1].name]


def test_a_zone_encodes_one_segment_of_a_chunk_at_its_own_rate_factor(clip, small_config, tmp_path):
    """With real ffmpeg: a two-segment chunk encoded again with its second segment's frames in
    a zone at a far higher rate factor: that segment shrinks, the first stays as it was, and
    the chunk still fits (same init, same segment boundaries)."""
    import dataclasses

    from vtp.core.publish import check_results
    from vtp.core.source import local_source
    from vtp.core.storage import FolderStore

    source = local_source(clip("silent"))
    config = dataclasses.replace(small_config, chunk_s=2.0, segment_s=1.0)
    info, plan, _ = stages.inspect(source, config)
    renditions = tuple(dataclasses.replace(r, target_vmaf=50.0, maxrate_kbps=900, bufsize_kbps=1200) for r in plan.renditions)
    plan = JobPlan(renditions, plan.chunks, fit={"mode": "auto", "rungs": [], "curves": {}})
    [chunk] = plan.chunks
    out = FolderStore(tmp_path / "out")
    top = renditions[0].name
    first = stages.encode_chunk(source, chunk, info, plan, config, scratch=tmp_path / "first", output=out)
    level = int(first.video[top].codec[-2:], 16)
    even = ChunkRework(0, (RungRework(top, 20.0, 900, 1200, "by hand", level),))
    plain = stages.rework_chunk(source, chunk, info, plan, config, even, scratch=tmp_path / "plain", output=out)
    one, two = plain.video[top].segments
    assert len(first.video[top].segments) == 2
    zoned = ChunkRework(0, (RungRework(top, 20.0, 900, 1200, "by hand", level, ((one.frames, one.frames + two.frames - 1, 40.0),)),))
    redo = stages.rework_chunk(source, chunk, info, plan, config, zoned, scratch=tmp_path / "zoned", output=out)
    again_one, again_two = redo.video[top].segments
    assert (again_one.start, again_one.frames, again_two.start, again_two.frames) == (one.start, one.frames, two.start, two.frames)
    assert abs(again_one.bytes - one.bytes) <= 0.05 * one.bytes  # the first segment at 20, as before
    assert again_two.bytes < 0.5 * two.bytes  # the second at 40
    check_results([stages.apply_rework(first, redo, zoned)], plan)
    assert redo.video[top].init_sha256 == first.video[top].init_sha256


def test_the_local_runner_encodes_the_missed_chunk_rungs_again_and_publishes_them(clip, small_config, tmp_path):
    """With real ffmpeg, through `run_job`: a fitted ladder told to want far more quality than
    any rung has (`quality_aim` 100) reworks every chunk-rung, each 8 steps lower; the output
    is whole and plays as the checks expect, and the manifest tells what was done."""
    import json

    from tests.support.checks import check_against_source
    from vtp.core.config import LadderMode
    from vtp.local.runner import run_job

    config = small_config.with_changes(ladder_mode=LadderMode.AUTO, chunk_s=2.0, segment_s=2.0,
                                       auto=AutoLadder(quality_slack=100.0, quality_aim=100.0))
    result = run_job(clip("irregular"), tmp_path / "out", config=config, workers=2)
    assert result.status.value == "COMPLETE", result.error
    manifest = json.loads((result.folder / "manifest.json").read_text())
    check_against_source(result.folder, clip("irregular"))
    rework = manifest["ladder"]["rework"]
    names = [r["name"] for r in manifest["renditions"]]
    assert rework["chunk_rungs"] == len(result.results) * len(names) and rework["cpu_s"] > 0
    assert manifest["stages"]["rework"]["chunks"] == len(result.results)
    fitted = {r["name"]: r["crf"] for r in manifest["ladder"]["rungs"]}
    for chunk in result.results:
        assert chunk.rework is not None and {r.name for r in chunk.rework.rungs} == set(names)
        for rung in chunk.rework.rungs:
            assert chunk.rates.crf[rung.name] == rung.crf and rung.reason.startswith("VMAF ")
            # 8 steps under its first factor (the rung's, or at most 4 from it), never under 10.
            assert 10.0 <= rung.crf <= max(10.0, fitted[rung.name] + 4 - 8)
    item = rework["items"][0]
    assert set(item) == {"chunk", "name", "crf", "maxrate_kbps", "bufsize_kbps", "reason", "level_idc", "zones"}
    assert any(line["item"] == "Lambda rework encodes" and line["usd"] > 0 for line in manifest["cost"]["lines"])
