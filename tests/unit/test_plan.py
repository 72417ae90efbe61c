"""plan_ladder / plan_chunks on fabricated sources: pure, no ffmpeg."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from vtp.core.config import DEFAULT_LADDER, PipelineConfig, Rung, ladder_from_names
from vtp.core.plan import Chunk, JobPlan, plan_chunks, plan_job, plan_ladder


def sizes(renditions) -> list[tuple[int, int]]:
    return [(r.width, r.height) for r in renditions]


def assert_keeps_aspect(renditions, display_width: int, display_height: int) -> None:
    aspect = display_width / display_height
    for r in renditions:
        assert r.width % 2 == 0 and r.height % 2 == 0, f"{r.name} {r.width}x{r.height} is not even"
        # the picture's own ratio is within a pixel of the source's ...
        assert abs(r.width - r.height * aspect) <= 1.0, (r.name, r.width, r.height)
        # ... and the pixel aspect ratio makes the display aspect exact
        assert Fraction(r.width, r.height) * Fraction(r.sample_aspect) == Fraction(display_width, display_height)


# --- the ladder ----------------------------------------------------------------------------


def test_a_1080p_source_gets_the_four_default_rungs(fake_source):
    renditions = plan_ladder(fake_source(1920, 1080), DEFAULT_LADDER)
    assert [r.name for r in renditions] == ["1080p", "720p", "480p", "360p"]
    assert sizes(renditions)[:2] == [(1920, 1080), (1280, 720)]
    assert renditions[2].height == 480 and renditions[2].width in (852, 854)
    assert sizes(renditions)[3] == (640, 360)
    assert_keeps_aspect(renditions, 1920, 1080)
    assert [(r.bitrate_kbps, r.crf) for r in renditions] == [(r.bitrate_kbps, r.crf) for r in DEFAULT_LADDER]
    assert renditions[0].sample_aspect == "1/1"


@pytest.mark.parametrize(
    ("width", "height"),
    [(1920, 1080), (1280, 720), (1000, 562), (854, 480), (641, 361), (200, 112), (3840, 1600)],
)
def test_the_ladder_never_upscales(fake_source, width, height):
    renditions = plan_ladder(fake_source(width, height), DEFAULT_LADDER)
    assert renditions
    for r in renditions:
        assert r.width <= width and r.height <= height, f"{r.name} {r.width}x{r.height} from {width}x{height}"


def test_a_720p_source_gets_no_1080p_rung(fake_source):
    renditions = plan_ladder(fake_source(1280, 720), DEFAULT_LADDER)
    assert [r.name for r in renditions] == ["720p", "480p", "360p"]
    assert sizes(renditions)[0] == (1280, 720)


def test_a_slightly_cropped_1080p_source_still_gets_its_1080p_rung_at_source_size(fake_source):
    renditions = plan_ladder(fake_source(1916, 1076), DEFAULT_LADDER)
    assert renditions[0].name == "1080p"
    assert sizes(renditions)[0] == (1916, 1076)


def test_a_portrait_source_gets_portrait_rungs(fake_source):
    renditions = plan_ladder(fake_source(1080, 1920), DEFAULT_LADDER)
    assert [r.name for r in renditions] == ["1080p", "720p", "480p", "360p"]
    assert sizes(renditions)[:2] == [(1080, 1920), (720, 1280)]
    assert renditions[2].width == 480 and renditions[2].height in (852, 854)
    assert sizes(renditions)[3] == (360, 640)
    assert_keeps_aspect(renditions, 1080, 1920)


def test_a_rotated_landscape_recording_is_planned_upright(fake_source):
    """A phone video stored 1920x1080 with a 90 degree display matrix is shown portrait."""
    renditions = plan_ladder(fake_source(1920, 1080, rotation=90), DEFAULT_LADDER)
    assert sizes(renditions)[0] == (1080, 1920)
    assert all(r.height > r.width for r in renditions)


def test_odd_source_sizes_give_even_renditions(fake_source):
    renditions = plan_ladder(fake_source(641, 361), DEFAULT_LADDER)
    assert [r.name for r in renditions] == ["360p"]
    assert sizes(renditions) == [(640, 360)]
    assert_keeps_aspect(renditions, 641, 361)


@pytest.mark.parametrize(("width", "height"), [(320, 180), (426, 240), (200, 112)])
def test_a_source_smaller_than_every_rung_gets_one_rung_at_its_own_size(fake_source, width, height):
    renditions = plan_ladder(fake_source(width, height), DEFAULT_LADDER)
    assert len(renditions) == 1
    assert sizes(renditions) == [(width, height)]


@pytest.mark.parametrize(("width", "height"), [(425, 239), (327, 180), (199, 111)])
def test_an_odd_source_smaller_than_every_rung_gets_one_even_rung_not_larger_than_itself(
    fake_source, width, height
):
    (rendition,) = plan_ladder(fake_source(width, height), DEFAULT_LADDER)
    assert rendition.width % 2 == 0 and rendition.height % 2 == 0
    assert width - 1 <= rendition.width <= width, f"{rendition.width} from {width}"
    assert height - 1 <= rendition.height <= height, f"{rendition.height} from {height}"


def test_a_widescreen_1080p_source_keeps_its_full_width_top_rung(fake_source):
    """A 2.4:1 film mastered at 1920x800 fits the 1080p box (1920x1080) without
    upscaling; its top rendition is 1920x800, not 1280 wide."""
    renditions = plan_ladder(fake_source(1920, 800), DEFAULT_LADDER)
    assert renditions[0].name == "1080p"
    assert sizes(renditions)[0] == (1920, 800)
    for r in renditions:
        assert r.width <= 1920 and r.height <= 800


def test_rungs_are_ordered_from_the_top_and_equal_sizes_appear_once(fake_source):
    ladder = (Rung("low", 360, 700, 25), Rung("top", 720, 3000, 23), Rung("same", 360, 600, 26))
    renditions = plan_ladder(fake_source(1280, 720), ladder)
    assert [r.name for r in renditions] == ["top", "low"]


def test_custom_ladder_from_names(fake_source):
    renditions = plan_ladder(fake_source(3840, 2160), ladder_from_names("2160p,1080p,240p"))
    assert sizes(renditions)[0] == (3840, 2160) and renditions[-1].height == 240


# --- the chunks ----------------------------------------------------------------------------

GRID = PipelineConfig(gop_s=2.0, chunk_s=10.0, segment_s=4.0)


def check_chunks(chunks: tuple[Chunk, ...], info, config: PipelineConfig) -> None:
    video = info.video
    assert chunks[0].start_s == 0.0 and chunks[-1].end_s is None
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for before, after in zip(chunks, chunks[1:]):
        assert before.end_s == after.start_s, "chunks tile the timeline"
    for chunk in chunks:
        for unit in (config.chunk_s, config.gop_s):
            ratio = chunk.start_s / unit
            assert abs(ratio - round(ratio)) < 1e-9, f"{chunk.name} starts at {chunk.start_s}, off the {unit} s grid"
        absolute_start = video.start_s + chunk.start_s
        if chunk.piece_start_s is None:
            earlier = [k for k in video.keyframe_times if k <= absolute_start]
            assert earlier in ([], [video.keyframe_times[0]]), "only the first keyframe may be left implicit"
        else:
            assert chunk.piece_start_s in video.keyframe_times
            assert chunk.piece_start_s <= absolute_start
        if chunk.end_s is not None:
            absolute_end = video.start_s + chunk.end_s
            if chunk.piece_end_s is not None:
                assert chunk.piece_end_s in video.keyframe_times
                assert chunk.piece_end_s > absolute_end
                # a whole GOP past the end stays in the piece (open GOPs reach back)
                assert any(absolute_end <= k < chunk.piece_end_s for k in video.keyframe_times)
            else:
                assert len([k for k in video.keyframe_times if k >= absolute_end]) <= 1


def test_chunk_boundaries_are_multiples_of_the_chunk_and_gop(fake_source):
    info = fake_source(duration_s=60.0)
    chunks = plan_chunks(info, GRID)
    assert [c.start_s for c in chunks] == [0, 10, 20, 30, 40, 50]
    assert [c.end_s for c in chunks] == [10, 20, 30, 40, 50, None]
    check_chunks(chunks, info, GRID)


def test_a_short_tail_is_folded_into_the_chunk_before(fake_source):
    chunks = plan_chunks(fake_source(duration_s=54.9), GRID)
    assert [c.start_s for c in chunks] == [0, 10, 20, 30, 40]
    assert chunks[-1].end_s is None
    # a tail of half a chunk or more is a chunk of its own
    assert [c.start_s for c in plan_chunks(fake_source(duration_s=55.0), GRID)][-1] == 50
    assert [c.start_s for c in plan_chunks(fake_source(duration_s=57.0), GRID)][-1] == 50


def test_a_boundary_a_hair_before_the_end_makes_no_empty_chunk(fake_source):
    chunks = plan_chunks(fake_source(duration_s=20.00001), GRID)
    assert [c.start_s for c in chunks] == [0, 10]


def test_a_source_shorter_than_a_chunk_is_one_chunk_of_the_whole_file(fake_source):
    (chunk,) = plan_chunks(fake_source(duration_s=4.0, keyframes=(0.0, 2.0)), GRID)
    assert (chunk.start_s, chunk.end_s, chunk.piece_start_s, chunk.piece_end_s) == (0.0, None, None, None)


def test_chunk_names_sort_in_order(fake_source):
    chunks = plan_chunks(fake_source(duration_s=124.0), GRID)
    assert len(chunks) == 12
    names = [c.name for c in chunks]
    assert names[7] == "chunk_00007" and names[10] == "chunk_00010"
    assert sorted(names) == names
    assert "chunk_00007" < "chunk_00010"


@pytest.mark.parametrize("config", [GRID, PipelineConfig(gop_s=1.0, chunk_s=2.0, segment_s=2.0)])
def test_pieces_start_on_a_source_keyframe_at_or_before_their_chunk(fake_source, config):
    info = fake_source(duration_s=60.0)  # keyframes at 0, 2.5, 5.7, 8.2, ... : never on the grid
    chunks = plan_chunks(info, config)
    check_chunks(chunks, info, config)
    assert all(c.piece_start_s is not None for c in chunks[2:])


def test_a_chunk_starting_right_on_a_source_keyframe(fake_source):
    info = fake_source(duration_s=40.0, keyframes=(0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0))
    chunks = plan_chunks(info, GRID)
    check_chunks(chunks, info, GRID)
    assert chunks[2].piece_start_s in (15.0, 20.0)
    assert chunks[1].piece_end_s == 25.0, "the piece runs to the second keyframe at or after its end"


def test_a_source_with_a_single_keyframe_cuts_every_piece_from_the_start(fake_source):
    info = fake_source(duration_s=30.0, keyframes=(0.0,))
    chunks = plan_chunks(info, GRID)
    assert len(chunks) == 3
    assert all(c.piece_start_s is None and c.piece_end_s is None for c in chunks)


def test_a_source_whose_video_starts_late(fake_source):
    """MPEG-TS/PS sources start at 1.4 s or so: plan times are on the output timeline
    (0 = the first frame), piece times are absolute source times."""
    start = 1.4
    info = fake_source(duration_s=30.0, start_s=start)
    assert info.video.keyframe_times[0] == start
    chunks = plan_chunks(info, GRID)
    assert [c.start_s for c in chunks] == [0, 10, 20]
    check_chunks(chunks, info, GRID)
    assert chunks[0].piece_start_s is None
    assert chunks[1].piece_start_s == max(k for k in info.video.keyframe_times if k <= start + 10)
    assert chunks[0].piece_end_s > start + 10


def test_plan_job_round_trips_through_json(fake_source):
    plan = plan_job(fake_source(duration_s=33.0), GRID)
    again = JobPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert Chunk.from_dict(plan.chunks[1].to_dict()) == plan.chunks[1]
