"""Plan: the ladder (pure, from the source's display size) and the chunks (on the segment
grid, moved back where keyframes are sparse, refused where a chunk would be too big).

The chunk tests take a SourceInfo and keyframe finder made up without ffmpeg for the
planning logic itself; the last ones plan real clips with the real finder and check, with
ffmpeg, that every chunk's encoder starts decoding where the plan says.
"""

from __future__ import annotations

import dataclasses
import json
import re
from fractions import Fraction

import pytest

from vtp.core import probe
from vtp.core.config import DEFAULT_LADDER, Limits, PipelineConfig, Rung, ladder_from_names
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.plan import Chunk, JobPlan, plan_chunks, plan_job, plan_ladder
from vtp.core.probe import KeyframeQuery
from vtp.core.source import local_source
from vtp.core.tools import run_ffmpeg


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



def test_an_anamorphic_source_is_planned_at_its_display_size(fake_source):
    """A 720x480 DVD picture with 8:9 pixels is shown 640x480: the ladder works from that."""
    info = fake_source(720, 480)
    info = dataclasses.replace(info, video=dataclasses.replace(info.video, display_width=640, display_height=480))
    renditions = plan_ladder(info, DEFAULT_LADDER)
    assert [r.name for r in renditions] == ["480p", "360p"]
    assert sizes(renditions) == [(640, 480), (480, 360)]
    assert_keeps_aspect(renditions, 640, 480)


# --- the chunks ----------------------------------------------------------------------------

GRID = PipelineConfig(gop_s=2.0, chunk_s=12.0, segment_s=4.0, max_preroll_s=4.0)


class Finder:
    """A keyframe finder over fixed keyframe times (as conftest's), recording what it is asked."""

    def __init__(self, keyframes_every, times: tuple[float, ...]):
        self.times = times
        self.find = keyframes_every(times)
        self.asked: list[list[float]] = []

    def __call__(self, boundaries: list[float]) -> list[KeyframeQuery]:
        self.asked.append(list(boundaries))
        return self.find(boundaries)


def check_chunks(chunks: tuple[Chunk, ...], info, config: PipelineConfig, keyframes: tuple[float, ...]) -> None:
    """What every plan keeps to, whatever the source."""
    origin = info.video.origin_s
    assert chunks[0].start_s == 0.0 and chunks[0].seek_s is None and chunks[0].preroll_s == 0.0
    assert chunks[-1].end_s is None
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for before, after in zip(chunks, chunks[1:]):
        assert before.end_s == after.start_s, "chunks tile the timeline"
        assert after.start_s > before.start_s
    for chunk in chunks:
        ratio = chunk.start_s / config.segment_s
        assert abs(ratio - round(ratio)) < 1e-9, f"{chunk.name} starts at {chunk.start_s}, off the segment grid"
        assert chunk.start_s < info.duration_s
    for chunk in chunks[1:]:
        assert chunk.seek_s is not None
        decoded_from = origin + chunk.start_s - chunk.preroll_s
        assert chunk.preroll_s >= 0
        assert any(abs(decoded_from - k) < 1e-6 for k in keyframes), f"{chunk.name} is not decoded from a keyframe"
        assert decoded_from == pytest.approx(max(k for k in keyframes if k <= origin + chunk.start_s + 1e-9))


def plan(info, config, finder):
    chunks = plan_chunks(info, config, finder)
    check_chunks(chunks, info, config, finder.times)
    return chunks


def starts(chunks) -> list[float]:
    return [c.start_s for c in chunks]


def every(step: float, until: float, origin: float = 0.0) -> tuple[float, ...]:
    return tuple(origin + k * step for k in range(int(until / step) + 1))


def test_chunks_are_on_the_chunk_grid_where_keyframes_are_on_the_gop_grid(fake_source, keyframes_every):
    info = fake_source(duration_s=60.0)
    finder = Finder(keyframes_every, every(2.0, 60.0))
    chunks = plan(info, GRID, finder)
    assert starts(chunks) == [0, 12, 24, 36, 48]
    assert [c.end_s for c in chunks] == [12, 24, 36, 48, None]
    assert [c.seek_s for c in chunks] == [None, 12, 24, 36, 48]
    assert all(c.preroll_s == 0 for c in chunks)
    assert [asked for asked in finder.asked if asked] == [[12, 24, 36, 48]], "one question for all the boundaries"


def test_a_short_tail_is_folded_into_the_chunk_before(fake_source, keyframes_every):
    finder = Finder(keyframes_every, every(2.0, 60.0))
    assert starts(plan(fake_source(duration_s=53.9), GRID, finder)) == [0, 12, 24, 36]
    # a tail of half a chunk or more is a chunk of its own
    assert starts(plan(fake_source(duration_s=54.0), GRID, finder)) == [0, 12, 24, 36, 48]
    assert starts(plan(fake_source(duration_s=59.0), GRID, finder)) == [0, 12, 24, 36, 48]


def test_a_boundary_a_hair_before_the_end_makes_no_empty_chunk(fake_source, keyframes_every):
    chunks = plan(fake_source(duration_s=24.00001), GRID, Finder(keyframes_every, every(2.0, 24.0)))
    assert starts(chunks) == [0, 12]


def test_a_source_shorter_than_a_chunk_is_one_chunk_read_from_the_start(fake_source, keyframes_every):
    finder = Finder(keyframes_every, (0.0, 2.0))
    (chunk,) = plan(fake_source(duration_s=4.0), GRID, finder)
    assert (chunk.start_s, chunk.end_s, chunk.seek_s, chunk.preroll_s) == (0.0, None, None, 0.0)
    assert all(asked == [] for asked in finder.asked), "no keyframe is looked for"


def test_chunk_names_sort_in_order(fake_source, keyframes_every):
    chunks = plan(fake_source(duration_s=149.0), GRID, Finder(keyframes_every, every(2.0, 150.0)))
    assert len(chunks) == 12
    names = [c.name for c in chunks]
    assert names[7] == "chunk_00007" and names[10] == "chunk_00010"
    assert sorted(names) == names


def test_off_grid_keyframes_are_decoded_from_with_their_pre_roll(fake_source, keyframes_every):
    keyframes = (0.0, 2.5, 5.7, 8.2, 11.1, 13.9, 16.6, 19.0, 22.4, 25.3, 28.1)
    chunks = plan(fake_source(duration_s=30.0), GRID, Finder(keyframes_every, keyframes))
    assert starts(chunks) == [0, 12, 24]
    assert [c.preroll_s for c in chunks] == pytest.approx([0.0, 12 - 11.1, 24 - 22.4])


def test_a_source_whose_video_starts_late(fake_source, keyframes_every):
    """MPEG-TS/PS start at 1.4 s or so: plan times are on the output timeline (0 = the first
    frame); the finder is asked, and the encoder seeks, in source times."""
    origin = 1.4
    info = fake_source(duration_s=30.0, origin_s=origin)
    finder = Finder(keyframes_every, every(1.0, 31.0, origin=origin))
    chunks = plan(info, GRID, finder)
    assert starts(chunks) == [0, 12, 24]
    assert finder.asked[0] == pytest.approx([origin + 12, origin + 24])
    assert [c.seek_s for c in chunks[1:]] == pytest.approx([origin + 12, origin + 24])
    assert all(c.preroll_s == pytest.approx(0.0, abs=1e-9) for c in chunks)


def test_the_seek_is_the_finders_not_the_boundary(fake_source):
    """The encoder passes the finder's seek (a container may need one past the boundary)."""

    def find(boundaries):
        return [KeyframeQuery(b, b + 0.130434, b - 1.0) for b in boundaries]

    chunks = plan_chunks(fake_source(duration_s=30.0), GRID, find)
    assert [c.seek_s for c in chunks[1:]] == pytest.approx([12.130434, 24.130434])
    assert [c.preroll_s for c in chunks[1:]] == pytest.approx([1.0, 1.0])


def test_sparse_keyframes_move_boundaries_back_to_the_segment_after_the_keyframe(fake_source, keyframes_every):
    finder = Finder(keyframes_every, (0.0, 5.0, 30.0))
    chunks = plan(fake_source(duration_s=60.0), GRID, finder)
    # 12: its keyframe (5) is 7 s back -> the segment boundary after it, 8.
    # 24: its keyframe is 5 again, and 8 is taken -> dropped. 36 -> 32; 48 -> 32 again, dropped.
    assert starts(chunks) == [0, 8, 32]
    assert [c.end_s for c in chunks] == [8, 32, None]
    assert [c.preroll_s for c in chunks] == pytest.approx([0.0, 3.0, 2.0])
    assert finder.asked == [[12, 24, 36, 48], [8, 32]], "moved boundaries are asked about once more, nothing else"


def test_a_keyframe_on_a_segment_boundary_is_where_the_moved_chunk_starts(fake_source, keyframes_every):
    chunks = plan(fake_source(duration_s=40.0), GRID, Finder(keyframes_every, (0.0, 16.0)))
    assert starts(chunks) == [0, 16]
    assert chunks[1].preroll_s == 0.0


def test_with_a_pre_roll_limit_under_a_segment_a_keyframe_just_before_the_boundary_keeps_it(fake_source, keyframes_every):
    """Its segment boundary after the keyframe is the boundary itself: it stays where it is."""
    config = GRID.with_changes(max_preroll_s=1.0)
    chunks = plan(fake_source(duration_s=30.0), config, Finder(keyframes_every, (0.0, 10.5, 23.5)))
    assert starts(chunks) == [0, 12, 24]
    assert [c.preroll_s for c in chunks] == pytest.approx([0.0, 1.5, 0.5])


def test_a_keyframe_at_the_limit_of_the_pre_roll_keeps_the_boundary(fake_source, keyframes_every):
    chunks = plan(fake_source(duration_s=30.0), GRID, Finder(keyframes_every, (0.0, 8.0, 20.0)))
    assert starts(chunks) == [0, 12, 24]
    assert [c.preroll_s for c in chunks] == pytest.approx([0.0, 4.0, 4.0])


def test_a_single_keyframe_makes_one_chunk_if_one_encoder_may_take_it(fake_source, keyframes_every):
    """40 s at 30 fps from one keyframe: 1200 frames for a single encoder."""
    info = fake_source(duration_s=40.0, fps="30/1")
    finder = Finder(keyframes_every, (0.0,))
    (chunk,) = plan(info, GRID.with_changes(limits=Limits(max_chunk_frames=1200)), finder)
    assert (chunk.start_s, chunk.end_s) == (0.0, None)
    with pytest.raises(PipelineError) as caught:
        plan_chunks(info, GRID.with_changes(limits=Limits(max_chunk_frames=1199)), finder)
    error = caught.value
    assert error.code is ErrorCode.UNSUPPORTED_INPUT and error.code.is_input_problem
    assert "no keyframe between 0.0 s and 40.0 s" in error.message
    assert "1200 frames" in error.message and "1199" in error.message


def test_the_frame_count_is_the_containers_where_it_keeps_one(fake_source, keyframes_every):
    """Two frames an hour apart: one chunk of two frames, though the nominal rate says 30 fps."""
    finder = Finder(keyframes_every, (0.0,))
    (chunk,) = plan(fake_source(duration_s=3600.0, fps="30/1", frames=2), GRID, finder)
    assert (chunk.start_s, chunk.end_s) == (0.0, None)
    with pytest.raises(PipelineError) as caught:
        plan_chunks(fake_source(duration_s=3600.0, fps="30/1"), GRID, finder)
    assert caught.value.code is ErrorCode.UNSUPPORTED_INPUT and "108000 frames" in caught.value.message


def test_the_frames_decoded_before_a_chunk_count_toward_its_size(fake_source, keyframes_every):
    info = fake_source(duration_s=30.0, fps="30/1")
    finder = Finder(keyframes_every, (0.0, 8.1, 20.1))
    limits = Limits(max_chunk_frames=477)  # chunk 1: 12 s + 3.9 s of pre-roll at 30 fps
    assert starts(plan(info, GRID.with_changes(limits=limits), finder)) == [0, 12, 24]
    with pytest.raises(PipelineError) as caught:
        plan_chunks(info, GRID.with_changes(limits=Limits(max_chunk_frames=476)), finder)
    assert "between 12.0 s and 24.0 s" in caught.value.message


def test_plan_job_round_trips_through_json(fake_source, keyframes_every):
    job = plan_job(fake_source(duration_s=33.0), GRID, keyframes_every(every(2.0, 34.0)))
    again = JobPlan.from_dict(json.loads(json.dumps(job.to_dict())))
    assert again == job
    assert len(job.chunks) == 3 and job.renditions
    assert Chunk.from_dict(job.chunks[1].to_dict()) == job.chunks[1]


# --- real sources, the real finder ---------------------------------------------------------------

# The chunk encoder's seek (vtp.core.encode.encode_args).
ENCODER_SEEK = ("-seek_timestamp", "1", "-noaccurate_seek")


def _first_frame(path, seek: float | None) -> float:
    args = ["-loglevel", "info", "-copyts"]
    if seek is not None:
        args += ["-ss", f"{seek:.6f}", *ENCODER_SEEK]
    stderr = run_ffmpeg([*args, "-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-frames:v", "1",
                         "-f", "null", "-"]).stderr
    match = re.search(r"\[Parsed_showinfo_\d+ @ [^\]]+\] n:\s*0 +pts:\s*-?\d+ +pts_time:\s*(-?[\d.]+)", stderr)
    assert match, stderr[-1500:]
    return float(match.group(1))


@pytest.fixture(scope="module")
def irregular_ts(clip, tmp_path_factory):
    dest = tmp_path_factory.mktemp("plan_ts") / "irregular.ts"
    run_ffmpeg(["-v", "error", "-i", str(clip("irregular")), "-map", "0", "-c", "copy", "-f", "mpegts", str(dest)])
    return dest


@pytest.fixture(scope="module")
def sparse_mp4(clip, tmp_path_factory):
    """The irregular clip with keyframes at 0 and 2.5 s only."""
    dest = tmp_path_factory.mktemp("plan_sparse") / "sparse.mp4"
    run_ffmpeg(["-v", "error", "-i", str(clip("irregular")), "-an", "-c:v", "libx264", "-preset", "ultrafast",
                "-force_key_frames", "0,2.5", "-x264-params", "scenecut=0:keyint=600:min-keyint=1", str(dest)])
    return dest


# A one-second segment grid with a one-second pre-roll limit: in the sparse clip the
# boundary at 2 s is dropped and the one at 4 s moves back to 3 s, just after its keyframe.
SPARSE_CONFIG = PipelineConfig(gop_s=1.0, chunk_s=2.0, segment_s=1.0, max_preroll_s=1.0)


@pytest.mark.parametrize("name", ["irregular", "irregular.ts", "mpg", "vfr", "sparse.mp4"])
def test_each_chunks_encoder_starts_decoding_where_the_plan_says(clip, irregular_ts, sparse_mp4, small_config, name):
    path = {"irregular.ts": irregular_ts, "sparse.mp4": sparse_mp4}.get(name) or clip(name)
    config = SPARSE_CONFIG if name == "sparse.mp4" else small_config
    source = local_source(path)
    header = probe.read_header(source)
    info = probe.describe(header, probe.opening_frames(source, header), source.size_bytes)
    find, _ = probe.keyframe_finder(source, info, workers=2)
    chunks = plan_chunks(info, config, find)
    assert len(chunks) >= 2
    if name == "sparse.mp4":
        assert starts(chunks) == [0, 3] and chunks[1].preroll_s == pytest.approx(0.5, abs=1e-3)
    origin = info.video.origin_s
    assert _first_frame(path, None) == pytest.approx(origin, abs=1e-6)
    for chunk in chunks[1:]:
        started = _first_frame(path, chunk.seek_s)
        assert started == pytest.approx(origin + chunk.start_s - chunk.preroll_s, abs=1e-3), chunk
        assert started <= origin + chunk.start_s + 1e-6, f"{chunk.name} would miss its first frames"
