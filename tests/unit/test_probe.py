"""Probe, cheapest step first: the container header, the first decoded frames, the
SourceInfo made of them, and where decoding starts when a chunk's encoder seeks.

Every answer is measured against the file itself: ffprobe's packets, and the frames
ffmpeg's decoders really give (`showinfo`/`ashowinfo`, `-copyts`, so source times).
Inputs are the session clips and files ffmpeg makes here.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from tests.support.checks import source_frame_times
from vtp.core import probe, stages
from vtp.core.config import PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.probe import SourceInfo, first_framecrc_time
from vtp.core.source import Source, local_source
from vtp.core.tools import run_ffmpeg

# How the chunk encoder opens the source when it seeks (vtp.core.encode.encode_args): -ss is
# a source timestamp, and decoding starts at whatever keyframe the demuxer lands on.
ENCODER_SEEK = ("-seek_timestamp", "1", "-noaccurate_seek")

_FIRST_SHOWN = re.compile(r"\[Parsed_(a?)showinfo_\d+ @ [^\]]+\] n:\s*0 +pts:\s*-?\d+ +pts_time:\s*(-?[\d.]+)")


def first_decoded(path: Path, seek: float | None = None, *, audio: bool = False) -> dict[str, float]:
    """{"video": t, "audio": t}: the source time of the first frame ffmpeg's decoders give,
    from the start or after seeking as the chunk encoder does."""
    args = ["-loglevel", "info", "-copyts"]
    if seek is not None:
        args += ["-ss", f"{seek:.6f}", *ENCODER_SEEK]
    args += ["-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-frames:v", "1"]
    if audio:
        args += ["-map", "0:a:0", "-af", "ashowinfo", "-frames:a", "1"]
    stderr = run_ffmpeg([*args, "-f", "null", "-"]).stderr
    found = {("audio" if kind else "video"): float(t) for kind, t in _FIRST_SHOWN.findall(stderr)}
    assert "video" in found and (not audio or "audio" in found), stderr[-2000:]
    return found


def describe(path: Path) -> SourceInfo:
    source = local_source(path)
    header = probe.read_header(source)
    return probe.describe(header, probe.opening_frames(source, header), source.size_bytes)


@pytest.fixture(scope="module")
def info_of():
    """`info_of(path)` -> the SourceInfo of a file (probed once per module)."""
    done: dict[Path, SourceInfo] = {}

    def get(path: Path) -> SourceInfo:
        if path not in done:
            done[path] = describe(path)
        return done[path]

    return get


@pytest.fixture(scope="module")
def made(clip, tmp_path_factory):
    """`made(name)` -> a file ffmpeg makes from the session clips (once per module)."""
    folder = tmp_path_factory.mktemp("probe_inputs")
    copy = ["-map", "0", "-c", "copy"]
    recipes = {
        # The irregular clip's H.264 (B-frames) remuxed: Matroska seeks by decode time.
        "irregular.mkv": lambda dest: ["-i", clip("irregular"), *copy, dest],
        # ... and into MPEG-TS (seeks by estimate; timestamps start at 1.4 s).
        "irregular.ts": lambda dest: ["-i", clip("irregular"), *copy, "-f", "mpegts", dest],
        # Matroska and MP4 whose timestamps start at 1.4 s, as remuxed from a TS recording.
        "late.mkv": lambda dest: ["-copyts", "-i", make("irregular.ts"), *copy, dest],
        "late.mp4": lambda dest: ["-copyts", "-i", make("irregular.ts"), *copy, dest],
        # An MP4 cut by a stream copy: its edit list hides the packets before the cut.
        "cut.mp4": lambda dest: ["-ss", "1.6", "-i", clip("irregular"), *copy, dest],
        # Anamorphic: pixels 4:3 wide; and the same turned by a display matrix.
        "anamorphic.mp4": lambda dest: ["-i", clip("silent"), "-vf", "setsar=4/3", "-c:v", "libx264",
                                        "-preset", "ultrafast", "-t", "0.5", dest],
        "anamorphic_rot90.mp4": lambda dest: ["-display_rotation", "90", "-i", make("anamorphic.mp4"), *copy, dest],
        # Three minutes: the irregular clip thirty times over (12 MB).
        "long.mp4": lambda dest: ["-stream_loop", "29", "-i", clip("irregular"), *copy, "-movflags", "+faststart", dest],
    }
    done: dict[str, Path] = {}
    lock = threading.RLock()

    def make(name: str) -> Path:
        with lock:
            if name not in done:
                dest = folder / name
                run_ffmpeg(["-v", "error", *[str(a) for a in recipes[name](str(dest))]])
                done[name] = dest
            return done[name]

    return make


@pytest.fixture(scope="module")
def mid_gop_ts(made, tmp_path_factory) -> Path:
    """The TS cut at a packet boundary 30% in: it starts with packets of a GOP whose keyframe
    (and parameter sets) are gone, which no decoder can turn into frames."""
    data = made("irregular.ts").read_bytes()
    packets = len(data) // 188
    dest = tmp_path_factory.mktemp("mid_gop") / "mid_gop.ts"
    dest.write_bytes(data[int(packets * 0.3) * 188:])
    return dest


def frame_span(path: Path) -> float:
    """Decoded frames' span: from the first frame to the end of the last, which lasts as long
    as the one before it (constant-rate clips)."""
    times = source_frame_times(path)
    return times[-1] + (times[-1] - times[-2])


# --- what the source is --------------------------------------------------------------------


def test_h264_mp4_is_described_as_its_packets_and_decoder_show_it(clip, info_of, packets, stream_of):
    path = clip("irregular")
    info = info_of(path)
    video = info.video
    stream = stream_of(path)
    assert "mp4" in info.format_name.split(",")
    assert info.size_bytes == path.stat().st_size
    assert (video.codec, video.pix_fmt, video.width, video.height) == ("h264", "yuv420p", 320, 180)
    assert (video.display_width, video.display_height, video.rotation) == (320, 180, 0)
    assert video.time_base == stream["time_base"]
    assert video.frame_rate == "30/1" and video.fps == 30.0
    assert not video.variable_frame_rate and not video.interlaced
    assert video.frames_declared == len(packets(path)) == 180
    assert video.origin_s == first_decoded(path)["video"] == 0.0
    assert info.duration_s == video.duration_s == pytest.approx(frame_span(path), abs=1e-3)
    assert info.duration_s == pytest.approx(6.0, abs=1e-3)
    assert not info.seeks_by_estimate
    assert info.seek_back_s == 0.0, "MP4 seeks by presentation time: ffmpeg's -ss lands where it is asked"
    assert info.has_audio
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", 48000, 2)
    assert info.audio.stream_index == 1 and video.stream_index == 0


def test_ntsc_rate_is_kept_exact(clip, info_of, packets):
    path = clip("ntsc")
    video = info_of(path).video
    assert video.frame_rate == "30000/1001"
    assert video.fps == pytest.approx(29.97, abs=0.001)
    assert video.frames_declared == len(packets(path)) == 60
    assert video.duration_s == pytest.approx(60 * 1001 / 30000, abs=1e-4)
    assert video.duration_s == pytest.approx(frame_span(path), abs=1e-3)
    assert not video.variable_frame_rate


def _intervals(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


@pytest.mark.parametrize(("name", "variable"), [("vfr", True), ("irregular", False), ("ntsc", False), ("ts", False)])
def test_variable_frame_rate_is_flagged_as_the_frame_intervals_are(clip, info_of, packets, name, variable):
    path = clip(name)
    video = info_of(path).video
    steps = _intervals([p.pts for p in packets(path)])
    measured = max(steps) / min(steps) > 1.2
    assert measured is variable, f"the clip itself is {'not ' if not variable else ''}variable"
    assert video.variable_frame_rate is variable
    if video.frames_declared:
        # The rate given is the average: the container's frame count over the duration.
        assert video.fps == pytest.approx(video.frames_declared / video.duration_s, rel=0.01)


@pytest.mark.parametrize("name", ["rot90", "rot270"])
def test_rotation_is_the_clockwise_turn_a_player_gives_the_decoded_picture(clip, info_of, name):
    path = clip(name)
    video = info_of(path).video
    upright = info_of(clip("silent")).video
    assert (video.width, video.height) == (upright.width, upright.height) == (320, 180)
    assert (video.display_width, video.display_height) == (180, 320)
    assert video.rotation in (90, 270)
    turn = {90: "transpose=clock", 270: "transpose=cclock"}[video.rotation]
    stored = run_ffmpeg(["-v", "error", "-noautorotate", "-i", str(path), "-frames:v", "1", "-vf", turn,
                         "-pix_fmt", "gray", "-f", "rawvideo", "-"]).stdout
    shown = run_ffmpeg(["-v", "error", "-i", str(path), "-frames:v", "1",
                        "-pix_fmt", "gray", "-f", "rawvideo", "-"]).stdout
    assert len(shown) == 180 * 320
    assert stored == shown, f"turning the stored picture {video.rotation} degrees clockwise is what ffmpeg shows"


def test_the_two_rotations_are_opposite(clip, info_of):
    assert {info_of(clip("rot90")).video.rotation, info_of(clip("rot270")).video.rotation} == {90, 270}


def _shown_aspect(path: Path) -> Fraction:
    """Width over height of the picture as ffmpeg displays it (turned, pixels at their aspect)."""
    stderr = run_ffmpeg(["-loglevel", "info", "-i", str(path), "-frames:v", "1", "-vf", "showinfo",
                         "-f", "null", "-"]).stderr
    match = re.search(r"n:\s*0 .*? sar:(\d+)/(\d+) s:(\d+)x(\d+)", stderr)
    assert match, stderr[-1500:]
    sar_num, sar_den, width, height = map(int, match.groups())
    return Fraction(width * sar_num, height * sar_den)


@pytest.mark.parametrize(("name", "display"), [("anamorphic.mp4", (427, 180)), ("anamorphic_rot90.mp4", (180, 427))])
def test_sample_aspect_ratio_and_rotation_give_the_display_size(made, info_of, name, display):
    path = made(name)
    video = info_of(path).video
    assert (video.width, video.height) == (320, 180)
    assert (video.display_width, video.display_height) == display
    shown = _shown_aspect(path)
    assert float(Fraction(video.display_width, video.display_height)) == pytest.approx(float(shown), rel=0.005)


def test_no_audio_track_gives_no_audio(clip, info_of):
    info = info_of(clip("silent"))
    assert info.audio is None and not info.has_audio


def test_vp9_webm(clip, info_of):
    path = clip("webm")
    info = info_of(path)
    assert set(info.format_name.split(",")) >= {"matroska", "webm"}
    assert info.video.codec == "vp9" and info.audio.codec == "opus"
    assert info.video.frames_declared is None, "Matroska keeps no frame count"
    assert info.video.origin_s == first_decoded(path)["video"] == 0.0
    assert info.seek_back_s == 0.0, "VP9 has no B-frame delay"


@pytest.mark.parametrize(
    ("name", "short", "long"),
    [
        ("irregular", 0, 0),
        ("ts", 0, 0),
        # The container's duration: for MPEG-PS it ends at the last packet with a timestamp,
        # a frame before the end; for WebM it is the file's, where the audio runs 8 ms longer.
        ("mpg", 1, 0),
        ("webm", 0, 1),
    ],
)
def test_duration_is_the_span_of_the_decoded_frames(clip, info_of, name, short, long):
    path = clip(name)
    info = info_of(path)
    times = source_frame_times(path)
    frame = times[-1] - times[-2]
    span = times[-1] + frame
    assert span - short * frame - 1e-3 <= info.duration_s <= span + long * frame + 1e-3, (info.duration_s, span)


@pytest.mark.parametrize("name", ["mpg", "ts"])
def test_mpeg_ps_and_ts_start_late_and_the_origin_is_the_first_decoded_frame(clip, info_of, packets, name):
    path = clip(name)
    info = info_of(path)
    first = first_decoded(path, audio=True)
    assert info.seeks_by_estimate
    assert info.video.origin_s > 0.1, "MPEG-PS/TS timestamps do not start at 0"
    assert info.video.origin_s == pytest.approx(first["video"], abs=1e-6)
    assert info.video.origin_s == pytest.approx(min(p.pts for p in packets(path)), abs=1e-6)
    # The audio's start on the output timeline, where 0 is the first video frame.
    assert info.audio.start_s == pytest.approx(first["audio"] - first["video"], abs=1e-4)
    assert info.audio.start_s < 0, "in these clips the audio starts a little before the video"


def test_audio_start_of_an_mp4_is_where_its_first_decoded_sample_is(clip, info_of):
    path = clip("irregular")
    first = first_decoded(path, audio=True)
    assert info_of(path).audio.start_s == pytest.approx(first["audio"] - first["video"], abs=1e-4) == 0.0


def test_leading_packets_that_cannot_be_decoded_are_not_frames(mid_gop_ts, info_of, packets, stream_of):
    info = info_of(mid_gop_ts)
    listed = packets(mid_gop_ts)
    first_key = min(p.pts for p in listed if p.key)
    first = first_decoded(mid_gop_ts, audio=True)
    assert min(p.pts for p in listed) < first_key, "the cut file starts inside a GOP"
    assert float(stream_of(mid_gop_ts)["start_time"]) < first_key
    assert info.video.origin_s == pytest.approx(first["video"], abs=1e-6) == pytest.approx(first_key, abs=1e-6)
    assert info.audio.start_s == pytest.approx(first["audio"] - first["video"], abs=1e-4)
    assert info.audio.start_s < -0.1, "audio from before the first picture is kept, before 0"
    assert info.duration_s == pytest.approx(frame_span(mid_gop_ts), abs=1e-3)


def test_packets_an_edit_list_hides_are_not_frames(made, info_of, packets):
    path = made("cut.mp4")
    info = info_of(path)
    assert min(p.pts for p in packets(path)) < -0.1, "the stream copy keeps the GOP before the cut"
    assert info.video.origin_s == first_decoded(path)["video"] == 0.0
    assert info.duration_s == pytest.approx(frame_span(path), abs=1e-3)


def test_opening_frames_are_the_first_decoded_frames_in_order(clip):
    source = local_source(clip("irregular"))
    header = probe.read_header(source)
    opening = probe.opening_frames(source, header)
    decoded = source_frame_times(clip("irregular"))
    assert 3 <= len(opening.times) <= 48
    assert list(opening.times) == pytest.approx(decoded[: len(opening.times)], abs=1e-4)
    assert opening.origin_s == opening.times[0] == 0.0
    assert opening.rate == pytest.approx(30.0, rel=1e-3)
    assert opening.io.requests >= 1 and opening.io.bytes_read > 0


def test_the_header_declares_codecs_size_rate_and_duration(clip):
    source = local_source(clip("irregular"))
    header = probe.read_header(source)
    assert header.video["codec_name"] == "h264" and header.audio["codec_name"] == "aac"
    assert header.duration_s == pytest.approx(6.0, abs=0.05)
    assert probe.declared_size(header) == (320, 180)
    assert probe.declared_rate(header) == 30
    assert header.io.requests >= 1


def _box_size(path: Path, kind: bytes) -> int:
    """The size of a top-level MP4 box."""
    data = path.read_bytes()
    at = 0
    while at + 8 <= len(data):
        size, name = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if name == kind:
            return size
        at += size
    raise AssertionError(f"no {kind!r} box in {path}")


def test_inspecting_an_indexed_file_reads_a_small_part_of_it(clip, made):
    """Cheapest first, never every packet: three minutes cost more than six seconds to open
    only by their bigger index (MP4's moov, read by the header's and the first frames' ffprobe),
    and the whole inspection, a keyframe for each of 15 boundaries included, reads a small part."""
    short, long = local_source(clip("irregular")), local_source(made("long.mp4"))
    opening_cost = []
    for source in (short, long):
        header = probe.read_header(source)
        opening = probe.opening_frames(source, header)
        opening_cost.append((header.io + opening.io).bytes_read)
    assert long.size_bytes > 25 * short.size_bytes
    index_growth = _box_size(made("long.mp4"), b"moov") - _box_size(clip("irregular"), b"moov")
    assert opening_cost[1] - opening_cost[0] <= 2 * index_growth + 64 * 1024, opening_cost
    info, plan, figures = stages.inspect(long, PipelineConfig())
    assert info.duration_s == pytest.approx(180.0, abs=1.0) and len(plan.chunks) == 15
    assert figures.bytes_read < long.size_bytes / 5, f"{figures.bytes_read:,} of {long.size_bytes:,} bytes"
    assert figures.requests < 3 * len(plan.chunks)


def test_source_info_round_trips_through_json(clip, made, info_of):
    for path in (clip("irregular"), clip("silent"), made("irregular.mkv")):
        info = info_of(path)
        again = SourceInfo.from_dict(json.loads(json.dumps(info.to_dict())))
        assert again == info
    assert info_of(made("irregular.mkv")).seek_back_s > 0


def test_first_framecrc_time_reads_the_first_row_in_its_time_base():
    text = (
        "#software: Lavf62\n#tb 0: 1/90000\n#media_type 0: video\n#codec_id 0: rawvideo\n"
        "#dimensions 0: 16x16\n#sar 0: 1/1\n#stream#, dts,    pts, duration,     size, hash\n"
        "0,     132000,     132000,     3000,      384, 0x1f5e3b0c\n0,     135000,     135000,     3000,      384, 0x1\n"
    )
    assert first_framecrc_time(text) == pytest.approx(132000 / 90000)
    assert first_framecrc_time("#tb 0: 1/90000\n") is None
    assert first_framecrc_time("") is None


# --- where decoding starts when a chunk's encoder seeks ---------------------------------------

# Boundaries (after the origin) on, just after and between the irregular clip's keyframes
# (0, 1.3, 2.1, 3.7, 5.2), for the containers with an index and for those that seek by estimate.
OFFSETS = (0.5, 1.3, 1.35, 2.0, 2.1, 2.2, 3.7, 4.4, 5.2, 5.5)
SEEKING = {
    "mp4": lambda clip, made: clip("irregular"),
    "mkv": lambda clip, made: made("irregular.mkv"),
    "late.mkv": lambda clip, made: made("late.mkv"),
    "late.mp4": lambda clip, made: made("late.mp4"),
    "ts": lambda clip, made: made("irregular.ts"),
    "mpg": lambda clip, made: clip("mpg"),
    "ts-one-gop": lambda clip, made: clip("ts"),
}


@pytest.mark.parametrize("kind", list(SEEKING))
def test_each_answer_is_where_the_encoders_decoding_really_starts(clip, made, info_of, packets, kind):
    path = SEEKING[kind](clip, made)
    info = info_of(path)
    origin = info.video.origin_s
    boundaries = [origin + offset for offset in OFFSETS if offset < info.duration_s - 0.3]
    find, spent = probe.keyframe_finder(local_source(path), info, workers=2)
    answers = find(boundaries)
    keyframes = sorted(p.pts for p in packets(path) if p.key)
    assert [a.boundary_s for a in answers] == boundaries
    for answer in answers:
        assert origin - 1e-6 <= answer.keyframe_s <= answer.boundary_s + 1e-6, answer
        started = first_decoded(path, answer.seek_s)["video"]
        assert started == pytest.approx(answer.keyframe_s, abs=1e-3), f"{answer}: decoding starts at {started}"
        if not info.seeks_by_estimate:
            # With an index, the answer is the last keyframe at or before the boundary.
            assert answer.keyframe_s == pytest.approx(max(k for k in keyframes if k <= answer.boundary_s + 1e-6), abs=1e-6)
    if info.seeks_by_estimate:
        assert all(any(abs(a.keyframe_s - k) < 1e-3 for k in keyframes) for a in answers)
        assert len(spent) <= len(boundaries) * 5, "a bounded number of windows per boundary"
    else:
        assert len(spent) == 1, "one ffprobe answers every boundary of an indexed file"


def test_the_irregular_clip_really_has_its_keyframes_where_conftest_says(clip, packets, irregular_keyframes):
    keyframes = [p.pts for p in packets(clip("irregular")) if p.key]
    assert keyframes == pytest.approx(list(irregular_keyframes), abs=1e-3)


def test_in_a_file_with_a_keyframe_on_a_boundary_decoding_starts_right_there(made, info_of):
    """Matroska seeks by decode time: ffmpeg's -ss lands 3/23 s early when there are
    B-frames, which would start one keyframe too soon; the seek given allows for it."""
    path = made("irregular.mkv")
    info = info_of(path)
    assert info.seek_back_s == pytest.approx(3 / 23, abs=1e-6)
    find, _ = probe.keyframe_finder(local_source(path), info, workers=1)
    (answer,) = find([info.video.origin_s + 2.1])
    assert answer.keyframe_s == pytest.approx(info.video.origin_s + 2.1, abs=1e-6)
    assert answer.seek_s > answer.boundary_s
    assert first_decoded(path, answer.seek_s)["video"] == pytest.approx(answer.keyframe_s, abs=1e-6)


def test_no_boundaries_cost_nothing(clip, info_of):
    info = info_of(clip("irregular"))
    find, spent = probe.keyframe_finder(local_source(clip("irregular")), info)
    assert find([]) == [] and spent == []


# --- what cannot be used, with its reason ---------------------------------------------------


def refused(path: Path | str) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        describe(Path(path))
    error = caught.value
    assert "\n" not in error.message and len(error.message) < 300, error.message
    assert error.code.is_input_problem
    return error


def test_a_missing_file(tmp_path):
    error = refused(tmp_path / "nowhere.mp4")
    assert error.code is ErrorCode.INPUT_NOT_FOUND and "nowhere.mp4" in error.message


def test_a_folder_is_not_a_file(tmp_path):
    assert refused(tmp_path).code is ErrorCode.INPUT_NOT_FOUND


def test_an_empty_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert refused(empty).code is ErrorCode.EMPTY_INPUT


def test_a_text_file_is_not_a_media_file_and_the_message_names_it_as_given(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("These are my holiday notes, not a video.\n" * 20)
    error = refused(text)
    assert error.code is ErrorCode.UNSUPPORTED_INPUT
    assert "file:" not in error.message, "ffmpeg's URL for the file is not the user's name for it"


def test_an_error_never_shows_the_url_ffmpeg_was_given(tmp_path):
    """A presigned URL carries credentials: messages name the source as the user knows it."""
    text = tmp_path / "secret-token-in-url.bin"
    text.write_text("not a video\n" * 50)
    source = Source(url=f"file:{text}", name="s3://bucket/upload.mp4", protocols="file", size_bytes=text.stat().st_size)
    with pytest.raises(PipelineError) as caught:
        probe.read_header(source)
    assert "secret-token-in-url" not in caught.value.message
    assert "s3://bucket/upload.mp4" in caught.value.message


def test_an_audio_only_file(tmp_path, ffmpeg):
    sound = tmp_path / "tone.m4a"
    ffmpeg("-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(sound))
    error = refused(sound)
    assert error.code is ErrorCode.NO_VIDEO_STREAM and "audio" in error.message


def test_a_jpeg_image(tmp_path, ffmpeg):
    image = tmp_path / "picture.mp4"
    ffmpeg("-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", "-c:v", "mjpeg",
           "-f", "image2", str(image))
    assert refused(image).code is ErrorCode.UNSUPPORTED_INPUT


def test_gif_frames_in_matroska(tmp_path, ffmpeg):
    gif = tmp_path / "animation.mkv"
    ffmpeg("-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "1", "-c:v", "gif",
           "-f", "matroska", str(gif))
    error = refused(gif)
    assert error.code is ErrorCode.UNSUPPORTED_INPUT and "gif" in error.message


def test_a_truncated_mp4_without_its_index(clip, tmp_path, ffmpeg):
    whole = tmp_path / "moov_at_end.mp4"
    ffmpeg("-v", "error", "-i", str(clip("irregular")), "-c", "copy", str(whole))
    cut = whole.read_bytes()[: int(whole.stat().st_size * 0.3)]
    assert b"moov" not in cut, "the index (moov) is at the end, so the cut keeps none of it"
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(cut)
    assert refused(truncated).code in (ErrorCode.UNSUPPORTED_INPUT, ErrorCode.CORRUPT_INPUT)


@pytest.mark.parametrize("suffix", ["srt", "mov_text"])
def test_a_subtitle_track_does_not_stop_the_probe(clip, tmp_path, ffmpeg, packets, suffix):
    """ffprobe opens a decoder for every stream: a subtitle decoder not on the codec
    whitelist used to end every probe of a film with subtitles."""
    subtitles = tmp_path / "captions.srt"
    subtitles.write_text("1\n00:00:00,500 --> 00:00:01,500\nHello\n")
    dest = tmp_path / ("subtitled.mkv" if suffix == "srt" else "subtitled.mp4")
    ffmpeg("-v", "error", "-i", str(clip("irregular")), "-i", str(subtitles), "-map", "0", "-map", "1",
           "-c:v", "copy", "-c:a", "copy", "-c:s", suffix, str(dest))
    info = describe(dest)
    assert info.video.codec == "h264" and info.audio.codec == "aac"
    assert info.duration_s == pytest.approx(6.0, abs=0.05)
    find, _ = probe.keyframe_finder(local_source(dest), info)
    (answer,) = find([info.video.origin_s + 2.5])
    assert answer.keyframe_s == pytest.approx(info.video.origin_s + 2.1, abs=1e-3)
    assert first_decoded(dest, answer.seek_s)["video"] == pytest.approx(answer.keyframe_s, abs=1e-3)


def test_an_audio_codec_not_accepted_is_named(clip, tmp_path, ffmpeg):
    dest = tmp_path / "wavpack.mkv"
    ffmpeg("-v", "error", "-i", str(clip("silent")), "-f", "lavfi", "-i", "sine=duration=2", "-map", "0:v",
           "-map", "1:a", "-c:v", "copy", "-c:a", "wavpack", str(dest))
    error = refused(dest)
    assert error.code is ErrorCode.UNSUPPORTED_INPUT and "wavpack" in error.message


def _hls_playlist(target: str) -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:6.0,\n{target}\n#EXT-X-ENDLIST\n"
    )


PLAYLISTS = {
    "hls.m3u8": _hls_playlist,
    "list.ffconcat": lambda target: f"ffconcat version 1.0\nfile '{target}'\n",
    "list.txt": lambda target: f"file '{target}'\n",  # the concat demuxer's plain list
}


@pytest.mark.parametrize("name", list(PLAYLISTS))
def test_a_playlist_of_a_real_video_is_refused(made, small_config, tmp_path, name):
    (tmp_path / "segment.ts").symlink_to(made("irregular.ts"))
    playlist = tmp_path / name
    playlist.write_text(PLAYLISTS[name]("segment.ts"))
    with pytest.raises(PipelineError) as caught:
        stages.inspect(local_source(playlist), small_config)
    assert caught.value.code is ErrorCode.UNSUPPORTED_INPUT
    assert len(caught.value.message) < 200, "the refusal names the problem, not ffmpeg's whitelists"


@pytest.mark.parametrize("name", ["hls.m3u8", "list.ffconcat"])
def test_probing_a_playlist_never_opens_the_file_it_references(small_config, tmp_path, name):
    """The referenced "segment" is a named pipe: a reader opening it is visible from here
    (a non-blocking writer can then open it), and nothing else touches it."""
    fifo = tmp_path / "segment.ts"
    os.mkfifo(fifo)
    playlist = tmp_path / name
    playlist.write_text(PLAYLISTS[name]("segment.ts"))
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            stages.inspect(local_source(playlist), small_config)
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    reader_seen = False
    deadline = time.monotonic() + 30
    while worker.is_alive() and time.monotonic() < deadline:
        try:
            handle = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            assert error.errno == errno.ENXIO, error  # no reader: the pipe is untouched
        else:
            reader_seen = True
            os.close(handle)
        time.sleep(0.002)
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert not reader_seen, f"probing {name} opened the file it references"
    error = outcome.get("error")
    assert isinstance(error, PipelineError) and error.code is ErrorCode.UNSUPPORTED_INPUT, error


@pytest.mark.parametrize("name", ["-report", "pipe:0.mp4"])
def test_a_file_named_like_an_option_or_a_protocol_is_just_a_file(clip, info_of, small_config, tmp_path,
                                                                   monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FFREPORT", raising=False)
    Path(name).write_bytes(clip("silent").read_bytes())
    source = local_source(name)
    assert source.url == f"file:{tmp_path / name}"
    info, plan, _ = stages.inspect(source, small_config)
    expected = info_of(clip("silent"))
    assert (info.duration_s, info.video.frames_declared) == (expected.duration_s, expected.video.frames_declared)
    assert len(plan.chunks) == 1
    assert sorted(os.listdir(tmp_path)) == [name], "nothing else (no ffmpeg report log) is written here"
