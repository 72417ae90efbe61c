"""probe(): what the pipeline sees in a file, and the reason code when it cannot be used."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.probe import SourceInfo, probe
from vtp.core.tools import ffprobe_json


def refused(path: Path) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        probe(path)
    return caught.value


# --- good sources -------------------------------------------------------------------------


def test_h264_mp4_streams_timing_and_frames(clip):
    info = probe(clip("irregular"))
    video = info.video
    assert "mp4" in info.format_name
    assert info.size_bytes == clip("irregular").stat().st_size
    assert video.codec == "h264" and video.pix_fmt == "yuv420p"
    assert (video.width, video.height) == (320, 180)
    assert video.frame_rate == "30/1" and video.fps == 30.0
    assert video.frames == 180
    assert info.duration_s == pytest.approx(6.0, abs=1e-6) == video.duration_s
    assert video.start_s == 0.0 and video.start_pts == 0
    assert video.rotation == 0 and not video.variable_frame_rate and not video.interlaced
    assert info.has_audio
    assert info.audio.codec == "aac" and info.audio.channels == 2 and info.audio.sample_rate == 48000
    assert info.audio.start_s == pytest.approx(0.0, abs=0.05)


def test_keyframe_times_ascend_and_start_at_the_first_frame(clip, irregular_keyframes):
    video = probe(clip("irregular")).video
    times = video.keyframe_times
    assert times == pytest.approx(irregular_keyframes, abs=1e-3), "every keyframe, where it was forced"
    assert list(times) == sorted(set(times))
    assert times[0] == video.start_s
    assert all(video.start_s <= t < video.start_s + video.duration_s for t in times)
    # The clip's shot changes are irregular, so its keyframes are not on any 1 s grid.
    assert any(abs(t - round(t)) > 0.01 for t in times)


def test_keyframe_lookups(clip):
    video = probe(clip("irregular")).video
    first, second = video.keyframe_times[:2]
    assert video.keyframe_at_or_before(second) == second
    assert video.keyframe_at_or_before(second - 0.01) == first
    assert video.keyframe_at_or_before(first - 0.5) is None
    assert video.keyframes_after(first) == list(video.keyframe_times[1:])
    assert video.seconds_to_pts(1.0) == round(1 / Fraction(video.time_base))


def test_ntsc_frame_rate_is_kept_exact(clip):
    info = probe(clip("ntsc"))
    assert info.video.frame_rate == "30000/1001"
    assert info.video.fps == pytest.approx(29.97, abs=0.001)
    assert info.video.frames == 60
    assert info.duration_s == pytest.approx(60 * 1001 / 30000, abs=1e-3)
    assert not info.video.variable_frame_rate


@pytest.mark.parametrize(("name", "clockwise"), [("rot90", 270), ("rot270", 90)])
def test_rotation_swaps_the_display_size(clip, name, clockwise):
    upright = probe(clip("silent")).video
    video = probe(clip(name)).video
    # synth's rotation is anticlockwise (ffmpeg's display_rotation); probe reports clockwise.
    assert video.rotation == clockwise
    assert (video.width, video.height) == (upright.width, upright.height)
    assert (video.display_width, video.display_height) == (upright.display_height, upright.display_width)
    assert video.display_height > video.display_width


def test_variable_frame_rate_is_detected(clip):
    video = probe(clip("vfr")).video
    assert video.variable_frame_rate
    assert video.fps == pytest.approx(30.0, rel=0.02), "the average rate stays near the nominal one"
    assert video.frames == pytest.approx(120, abs=2)


def test_no_audio_track_gives_audio_none(clip):
    info = probe(clip("silent"))
    assert info.audio is None and not info.has_audio
    assert info.summary()["has_audio"] is False


def test_webm_vp9(clip):
    info = probe(clip("webm"))
    assert "webm" in info.format_name or "matroska" in info.format_name
    assert info.video.codec == "vp9"
    assert info.video.frames == 60 and info.duration_s == pytest.approx(2.0, abs=0.01)
    assert info.audio is not None and info.audio.codec == "opus"


def test_mpeg2_in_mpeg_ps_with_a_late_start(clip):
    info = probe(clip("mpg"))
    video = info.video
    assert info.format_name == "mpeg"
    assert video.codec == "mpeg2video"
    assert video.frames == 120
    assert video.start_s > 0.1, "MPEG-PS timestamps do not start at 0"
    assert video.keyframe_times[0] == video.start_s
    assert info.audio is not None and info.audio.codec == "mp2"


def test_mpeg_ps_duration_and_keyframes_are_presentation_times(clip):
    """In MPEG-PS some frames carry no pts (only a dts); the probe must not take the dts
    (earlier by the B-frame delay) for the frame's time. ffprobe's `-fflags +genpts`
    gives the presentation times the decoder will use."""
    source = clip("mpg")
    video = probe(source).video
    listing = ffprobe_json(
        ["-fflags", "+genpts", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", str(source)]
    )["packets"]
    keyframes = sorted(float(p["pts_time"]) for p in listing if "K" in p["flags"])
    assert [round(t, 4) for t in video.keyframe_times] == [round(t, 4) for t in keyframes]
    assert video.duration_s == pytest.approx(4.0, abs=0.01), "120 frames at 30 fps"


def test_summary_is_the_manifest_source_block(clip):
    summary = probe(clip("irregular")).summary()
    for key in ("duration_s", "width", "height", "frame_rate", "frames", "has_audio"):
        assert key in summary
    assert summary["frames"] == 180 and summary["has_audio"] is True and summary["frame_rate"] == "30/1"


def test_to_dict_from_dict_round_trip_through_json(clip):
    for name in ("irregular", "silent"):
        info = probe(clip(name))
        again = SourceInfo.from_dict(json.loads(json.dumps(info.to_dict())))
        assert again == info
        assert isinstance(again.video.keyframe_times, tuple)


# --- what cannot be used, with its reason -----------------------------------------------


def test_missing_file(tmp_path):
    error = refused(tmp_path / "nowhere.mp4")
    assert error.code is ErrorCode.INPUT_NOT_FOUND
    assert "nowhere.mp4" in error.message


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert refused(empty).code is ErrorCode.EMPTY_INPUT


def test_text_file(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("These are my holiday notes, not a video.\n" * 20)
    error = refused(text)
    assert error.code is ErrorCode.UNSUPPORTED_INPUT
    assert "\n" not in error.message


def test_audio_only_file(tmp_path, ffmpeg):
    sound = tmp_path / "tone.m4a"
    ffmpeg("-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(sound))
    error = refused(sound)
    assert error.code is ErrorCode.NO_VIDEO_STREAM
    assert "audio" in error.message


def test_truncated_mp4_without_faststart(clip, tmp_path, ffmpeg):
    whole = tmp_path / "moov_at_end.mp4"
    ffmpeg("-v", "error", "-i", str(clip("irregular")), "-c", "copy", str(whole))
    data = whole.read_bytes()
    cut = data[: int(len(data) * 0.3)]
    assert b"moov" not in cut, "the index (moov) is at the end, so the cut keeps none of it"
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(cut)
    error = refused(truncated)
    assert error.code is ErrorCode.CORRUPT_INPUT
    assert "\n" not in error.message


def test_single_png_image(tmp_path, ffmpeg):
    image = tmp_path / "picture.png"
    ffmpeg("-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(image))
    assert refused(image).code is ErrorCode.UNSUPPORTED_INPUT


def _hls_playlist(target: str) -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:6.0,\n{target}\n#EXT-X-ENDLIST\n"
    )


def _ffconcat_list(target: str) -> str:
    return f"ffconcat version 1.0\nfile '{target}'\n"


PLAYLISTS = {"hls.m3u8": _hls_playlist, "list.ffconcat": _ffconcat_list}


@pytest.mark.parametrize("name", list(PLAYLISTS))
def test_a_playlist_pointing_at_a_real_video_is_refused(clip, tmp_path, name):
    video = tmp_path / "segment.ts"
    video.symlink_to(clip("irregular"))
    playlist = tmp_path / name
    playlist.write_text(PLAYLISTS[name]("segment.ts"))
    assert refused(playlist).code is ErrorCode.UNSUPPORTED_INPUT


@pytest.mark.parametrize("name", list(PLAYLISTS))
def test_probing_a_playlist_never_opens_the_file_it_references(tmp_path, name):
    """An uploaded playlist must not make ffprobe read other local files (or the network).

    The referenced "segment" is a named pipe: opening it for reading is visible from here
    (a writer can then open it without O_NONBLOCK failing), and nothing else touches it.
    """
    fifo = tmp_path / "segment.ts"
    os.mkfifo(fifo)
    playlist = tmp_path / name
    playlist.write_text(PLAYLISTS[name]("segment.ts"))

    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            probe(playlist)
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    reader_seen = False
    deadline = time.monotonic() + 60
    while worker.is_alive() and time.monotonic() < deadline:
        try:
            handle = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            assert error.errno == errno.ENXIO, error  # no reader: the pipe is untouched
        else:
            reader_seen = True
            os.close(handle)  # let the reader see end of file and go on
        time.sleep(0.002)
    worker.join(timeout=60)
    assert not worker.is_alive()

    assert not reader_seen, f"probing {name} opened the file it references"
    error = outcome.get("error")
    assert isinstance(error, PipelineError) and error.code is ErrorCode.UNSUPPORTED_INPUT, error


def test_input_problems_are_not_retryable():
    for code in (ErrorCode.INPUT_NOT_FOUND, ErrorCode.EMPTY_INPUT, ErrorCode.CORRUPT_INPUT,
                 ErrorCode.NO_VIDEO_STREAM, ErrorCode.UNSUPPORTED_INPUT):
        assert code.is_input_problem
    assert not ErrorCode.ENCODE_FAILED.is_input_problem
    assert not ErrorCode.FFMPEG_NOT_FOUND.is_input_problem
