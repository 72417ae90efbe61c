"""Validate, cheapest check first: the size before anything is read, then what the
container's header declares, then the first decoded frames, then the SourceInfo.

Each limit refuses with its own reason code and a one-line message. The refused files are
made here with ffmpeg, or, for sizes no encoder writes, by editing what ffmpeg wrote.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vtp.core import probe, stages, validate
from vtp.core.config import Limits, PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.probe import Header, OpeningFrames
from vtp.core.source import local_source
from vtp.core.tools import IoStats, run_ffmpeg


def refusal(call, *args) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        call(*args)
    error = caught.value
    assert "\n" not in error.message and len(error.message) < 300, error.message
    assert error.code.is_input_problem
    return error


def header_of(path: Path) -> Header:
    return probe.read_header(local_source(path))


def made_header(codec: str = "h264", width: int = 1920, height: int = 1080, rate: str = "30/1",
                duration_s: float | None = 60.0) -> Header:
    """A header as read_header makes it, for the checks' pure logic."""
    video = {"index": 0, "codec_name": codec, "codec_type": "video", "width": width, "height": height,
             "avg_frame_rate": rate, "r_frame_rate": rate, "time_base": "1/90000"}
    return Header("matroska,webm", duration_s, 0.0, video, None, IoStats())


def _patch_matroska_size(data: bytearray, old: int, new: int) -> bytearray:
    """Set Matroska's PixelWidth (B0) and PixelHeight (BA) elements, two-byte values, in place."""
    for element in (0xB0, 0xBA):
        marker = bytes([element, 0x82]) + old.to_bytes(2, "big")
        at = data.find(marker)
        assert at > 0 and data.find(marker, at + 1) < 0, f"one {element:#x} element of {old}"
        data[at + 2:at + 4] = new.to_bytes(2, "big")
    return data


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """`odd(name)` -> a file that breaks a limit (made once per module)."""
    folder = tmp_path_factory.mktemp("odd_inputs")
    done: dict[str, Path] = {}

    def ffmpeg(*args: str) -> None:
        run_ffmpeg(["-v", "error", *args])

    def make(name: str) -> Path:
        if name in done:
            return done[name]
        dest = folder / name
        if name == "1000fps.mp4":
            ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=1000", "-t", "0.5", "-c:v", "libx264",
                   "-preset", "ultrafast", str(dest))
        elif name == "burst.mp4":
            # 48 frames a millisecond apart, then one a second: the header's average is 3 fps.
            ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=30", "-frames:v", "70",
                   "-vf", "settb=1/90000,setpts='if(lt(N,48),N*0.001,0.048+(N-48))/TB'",
                   "-fps_mode", "passthrough", "-enc_time_base", "1:90000", "-c:v", "libx264",
                   "-preset", "ultrafast", "-bf", "0", str(dest))
        elif name == "8x8.mp4":
            ffmpeg("-f", "lavfi", "-i", "testsrc2=size=8x8:rate=30", "-t", "1", "-c:v", "libx264",
                   "-preset", "ultrafast", str(dest))
        elif name == "30000x30000.mkv":
            # Raw video declares its size in the container only: 256x256 frames, then the
            # header says 30000x30000 (and the file is cut short; nothing should read that far).
            whole = folder / "256x256.mkv"
            ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=256x256:rate=30", "-frames:v", "3",
                   "-c:v", "rawvideo", "-pix_fmt", "gray", str(whole))
            dest.write_bytes(_patch_matroska_size(bytearray(whole.read_bytes()), 256, 30000)[:100_000])
        elif name == "30000x30000.y4m":
            small = folder / "16x16.y4m"
            ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=16x16:rate=30", "-frames:v", "2",
                   "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(small))
            data = small.read_bytes()
            assert data.startswith(b"YUV4MPEG2 W16 H16 ")
            dest.write_bytes(data.replace(b"W16 H16", b"W30000 H30000", 1))
        else:
            raise KeyError(name)
        done[name] = dest
        return dest

    return make


# --- the size, before anything is read -------------------------------------------------------


def test_size_limit():
    limits = Limits(max_bytes=5_000_000)
    validate.check_size(5_000_000, limits)  # at the limit is allowed
    error = refusal(validate.check_size, 5_000_001, limits)
    assert error.code is ErrorCode.INPUT_TOO_LARGE
    assert "5,000,001 bytes" in error.message and "limit of 4.77 MiB (5,000,000 bytes)" in error.message


def test_an_empty_file_is_refused_by_its_size():
    assert refusal(validate.check_size, 0, Limits()).code is ErrorCode.EMPTY_INPUT


# --- what the header declares, before any decoding -------------------------------------------


def test_a_real_clip_passes_the_default_limits_and_is_measured_against_them(clip):
    header = header_of(clip("silent"))
    validate.check_header(header, Limits())
    validate.check_header(header, Limits(max_width=320, max_height=180, max_frame_rate=30, max_duration_s=2.0))
    error = refusal(validate.check_header, header, Limits(max_width=319, max_height=180))
    assert error.code is ErrorCode.RESOLUTION_TOO_HIGH
    assert "320x180" in error.message and "319x180" in error.message
    assert refusal(validate.check_header, header, Limits(max_frame_rate=29.9)).code is ErrorCode.FRAME_RATE_TOO_HIGH
    error = refusal(validate.check_header, header, Limits(max_duration_s=1.5))
    assert error.code is ErrorCode.INPUT_TOO_LONG
    assert "2 s" in error.message and "1.5 s" in error.message, error.message


def test_the_size_limit_fits_a_picture_either_way_round(clip):
    header = header_of(clip("rot90"))  # 320x180 stored, shown portrait
    validate.check_header(header, Limits(max_width=180, max_height=320))
    validate.check_header(header, Limits(max_width=320, max_height=180))
    assert refusal(validate.check_header, header, Limits(max_width=320, max_height=170)).code is ErrorCode.RESOLUTION_TOO_HIGH


def test_a_declared_30000x30000_picture_is_refused_from_the_header(odd, monkeypatch):
    path = odd("30000x30000.mkv")
    header = header_of(path)
    assert probe.declared_size(header) == (30000, 30000), "ffprobe says 0x0; its log keeps the declared size"
    error = refusal(validate.check_header, header, Limits())
    assert error.code is ErrorCode.RESOLUTION_TOO_HIGH
    assert "30000x30000" in error.message and "7680x4320" in error.message
    _refused_without_decoding(monkeypatch, path, ErrorCode.RESOLUTION_TOO_HIGH)


def test_a_picture_too_large_for_the_demuxer_is_refused_for_its_size(odd):
    error = refusal(header_of, odd("30000x30000.y4m"))
    assert error.code is ErrorCode.RESOLUTION_TOO_HIGH and "30000x30000" in error.message


def _refused_without_decoding(monkeypatch, path: Path, code: ErrorCode, limits: Limits = Limits()) -> PipelineError:
    """The whole inspection refuses the file before a frame is decoded."""

    def decoding(*args, **kwargs):
        raise AssertionError("a frame was decoded before the header's refusal")

    monkeypatch.setattr(probe, "opening_frames", decoding)
    monkeypatch.setattr(probe, "keyframe_finder", decoding)
    error = refusal(stages.inspect, local_source(path), PipelineConfig(limits=limits))
    assert error.code is code
    return error


def test_a_1000_fps_file_is_refused_from_its_header(odd, monkeypatch):
    path = odd("1000fps.mp4")
    header = header_of(path)
    assert probe.declared_rate(header) == 1000
    error = refusal(validate.check_header, header, Limits())
    assert error.code is ErrorCode.FRAME_RATE_TOO_HIGH
    assert "1000 fps" in error.message and "240 fps" in error.message
    validate.check_header(header, Limits(max_frame_rate=1000))  # at the limit is allowed
    _refused_without_decoding(monkeypatch, path, ErrorCode.FRAME_RATE_TOO_HIGH)


def test_a_file_longer_than_the_limit_is_refused_from_its_header(clip, monkeypatch):
    error = _refused_without_decoding(monkeypatch, clip("irregular"), ErrorCode.INPUT_TOO_LONG, Limits(max_duration_s=5))
    assert "6 s" in error.message and "5 s" in error.message


def test_a_tiny_picture_is_unsupported(odd):
    error = refusal(validate.check_header, header_of(odd("8x8.mp4")), Limits())
    assert error.code is ErrorCode.UNSUPPORTED_INPUT and "8x8" in error.message


@pytest.mark.parametrize(("width", "height"), [(15, 720), (1280, 12)])
def test_a_picture_thinner_than_16_pixels_is_unsupported(width, height):
    error = refusal(validate.check_header, made_header(width=width, height=height), Limits())
    assert error.code is ErrorCode.UNSUPPORTED_INPUT and f"{width}x{height}" in error.message


def test_a_header_without_a_picture_size_is_corrupt():
    assert refusal(validate.check_header, made_header(width=0, height=0), Limits()).code is ErrorCode.CORRUPT_INPUT


@pytest.mark.parametrize("codec", ["gif", "png", "webp"])
def test_image_codecs_are_not_video(codec):
    """read_header meets them first as decoders off the whitelist (test_probe's GIF in
    Matroska); a header that names one is refused here too."""
    error = refusal(validate.check_header, made_header(codec=codec), Limits())
    assert error.code is ErrorCode.UNSUPPORTED_INPUT and f"{codec} images" in error.message


def test_a_video_codec_not_accepted():
    error = refusal(validate.check_header, made_header(codec="cinepak"), Limits())
    assert error.code is ErrorCode.UNSUPPORTED_INPUT and "cinepak" in error.message


def test_the_rate_checked_is_the_average_where_the_header_has_one():
    header = made_header(rate="30/1")
    header.video["r_frame_rate"] = "1000/1"  # a base rate (the finest timestamp step) is not the rate
    validate.check_header(header, Limits())
    header.video["avg_frame_rate"] = "0/0"
    assert refusal(validate.check_header, header, Limits()).code is ErrorCode.FRAME_RATE_TOO_HIGH


# --- the first decoded frames ------------------------------------------------------------------


def test_frames_coming_far_faster_than_the_header_says_are_refused(odd):
    path = odd("burst.mp4")
    source = local_source(path)
    header = probe.read_header(source)
    assert probe.declared_rate(header) < 10, "the header's average is a few frames a second"
    validate.check_header(header, Limits())
    opening = probe.opening_frames(source, header)
    error = refusal(validate.check_opening, opening, Limits())
    assert error.code is ErrorCode.FRAME_RATE_TOO_HIGH
    assert "1000 fps" in error.message and "240 fps" in error.message


def test_the_first_frames_of_a_real_clip_pass(clip):
    source = local_source(clip("vfr"))
    header = probe.read_header(source)
    validate.check_opening(probe.opening_frames(source, header), Limits())


def test_a_burst_up_to_twice_the_limit_is_let_through():
    limits = Limits(max_frame_rate=30)
    at_twice = OpeningFrames(0.0, tuple(i / 60 for i in range(10)), IoStats())
    validate.check_opening(at_twice, limits)
    over = OpeningFrames(0.0, tuple(i / 61 for i in range(10)), IoStats())
    assert refusal(validate.check_opening, over, limits).code is ErrorCode.FRAME_RATE_TOO_HIGH


def test_frames_all_at_one_time_are_an_unbounded_rate():
    stuck = OpeningFrames(1.0, (1.0, 1.0, 1.0, 1.0), IoStats())
    error = refusal(validate.check_opening, stuck, Limits())
    assert error.code is ErrorCode.FRAME_RATE_TOO_HIGH and "unbounded" in error.message


def test_too_few_frames_to_measure_a_rate_pass():
    validate.check_opening(OpeningFrames(0.0, (0.0, 0.001), IoStats()), Limits())


# --- the SourceInfo ----------------------------------------------------------------------------


def test_duration_limit_on_the_source_info(fake_source):
    limits = Limits(max_duration_s=30.0)
    validate.check_info(fake_source(duration_s=30.0), limits)
    error = refusal(validate.check_info, fake_source(duration_s=30.4), limits)
    assert error.code is ErrorCode.INPUT_TOO_LONG
    assert "30.4 s" in error.message and "30 s" in error.message


def test_a_video_too_short_to_stream(fake_source):
    assert refusal(validate.check_info, fake_source(duration_s=0.05), Limits()).code is ErrorCode.UNSUPPORTED_INPUT
    validate.check_info(fake_source(duration_s=0.1), Limits())


def test_a_single_frame_video_is_too_short(tmp_path):
    single = tmp_path / "single.mp4"
    run_ffmpeg(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=30", "-frames:v", "1",
                "-c:v", "libx264", "-preset", "ultrafast", str(single)])
    source = local_source(single)
    header = probe.read_header(source)
    validate.check_header(header, Limits())
    info = probe.describe(header, probe.opening_frames(source, header), source.size_bytes)
    assert refusal(validate.check_info, info, Limits()).code is ErrorCode.UNSUPPORTED_INPUT


# --- the order --------------------------------------------------------------------------------


def test_the_cheapest_problem_is_the_one_reported(odd):
    path = odd("1000fps.mp4")
    too_small = Limits(max_bytes=path.stat().st_size - 1, max_width=32, max_height=32)
    assert refusal(stages.inspect, local_source(path), PipelineConfig(limits=too_small)).code is ErrorCode.INPUT_TOO_LARGE
    no_bytes_limit = dataclasses.replace(too_small, max_bytes=Limits().max_bytes)
    # The picture size is checked before the frame rate.
    assert refusal(stages.inspect, local_source(path), PipelineConfig(limits=no_bytes_limit)).code is ErrorCode.RESOLUTION_TOO_HIGH
