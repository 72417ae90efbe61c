"""Audio: encoded once, on the video's timeline: starts at 0 and lasts as long as the video."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vtp.core import audio
from vtp.core.probe import probe

TOLERANCE_S = 0.05


@pytest.fixture(scope="module")
def variants(clip, ffmpeg, tmp_path_factory):
    """Sources whose audio does not line up with the video, made by remuxing a clip."""
    folder = tmp_path_factory.mktemp("audio_sources")
    base = str(clip("irregular"))
    late = folder / "audio_late.mp4"  # the audio starts 0.5 s after the video (and runs 0.5 s past it)
    ffmpeg("-v", "error", "-i", base, "-itsoffset", "0.5", "-i", base, "-map", "0:v", "-map", "1:a",
           "-c", "copy", str(late))
    short = folder / "audio_short.mp4"  # the audio stops 2 s before the video
    ffmpeg("-v", "error", "-i", base, "-t", "4", "-i", base, "-map", "0:v", "-map", "1:a", "-c", "copy", str(short))
    return {"late": late, "short": short}


@pytest.fixture(scope="module")
def encode(small_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio_out")
    done = {}

    def run(source: Path):
        if source not in done:
            info = probe(source)
            dest = folder / f"{source.stem}" / "audio.mp4"
            stats = audio.encode_audio(source, info, small_config, dest)
            done[source] = (info, dest, stats)
        return done[source]

    return run


def span(stream: dict) -> tuple[float, float]:
    return float(stream["start_time"]), float(stream["duration"])


def max_volume_db(ffmpeg, path: Path, start: float, length: float) -> float:
    stderr = ffmpeg("-ss", f"{start}", "-t", f"{length}", "-i", str(path), "-af", "volumedetect", "-f", "null", "-")
    found = re.search(r"max_volume: (-?[\d.]+|-inf) dB", stderr)
    assert found, stderr
    return float(found.group(1))


def test_audio_starts_at_zero_and_lasts_the_video(clip, encode, stream_of, small_config):
    info, dest, stats = encode(clip("irregular"))
    stream = stream_of(dest, "a:0")
    start, duration = span(stream)
    assert start == pytest.approx(0.0, abs=1e-3)
    assert duration == pytest.approx(info.duration_s, abs=TOLERANCE_S)
    assert stream["codec_name"] == "aac"
    assert int(stream["sample_rate"]) == small_config.audio_sample_rate
    assert int(stream["channels"]) == small_config.audio_channels
    assert stats.wall_s > 0


def test_the_output_holds_only_audio(clip, encode):
    from vtp.core.tools import ffprobe_json

    _, dest, _ = encode(clip("irregular"))
    streams = ffprobe_json(["-show_streams", str(dest)])["streams"]
    assert [s["codec_type"] for s in streams] == ["audio"]


def test_audio_that_starts_late_is_padded_to_start_at_zero(variants, encode, stream_of, ffmpeg):
    source = variants["late"]
    info, dest, _ = encode(source)
    assert info.audio.start_s == pytest.approx(0.5, abs=0.025), "the remuxed source really starts late (less AAC priming)"
    start, duration = span(stream_of(dest, "a:0"))
    assert start == pytest.approx(0.0, abs=1e-3)
    assert duration == pytest.approx(info.duration_s, abs=TOLERANCE_S), "and ends with the video, not 0.5 s later"
    # silence where the source had no audio yet, sound after it starts
    assert max_volume_db(ffmpeg, dest, 0.0, 0.45) < -60
    assert max_volume_db(ffmpeg, dest, 0.6, 1.0) > -40


def test_audio_that_stops_early_is_padded_to_the_end(variants, encode, stream_of, ffmpeg):
    info, dest, _ = encode(variants["short"])
    start, duration = span(stream_of(dest, "a:0"))
    assert start == pytest.approx(0.0, abs=1e-3)
    assert duration == pytest.approx(info.duration_s, abs=TOLERANCE_S)
    assert max_volume_db(ffmpeg, dest, 1.0, 1.0) > -40
    assert max_volume_db(ffmpeg, dest, 4.3, 1.5) < -60


@pytest.mark.parametrize("name", ["mpg", "webm"])
def test_sources_whose_audio_and_video_start_apart(clip, encode, stream_of, name):
    """MPEG-PS: the video starts at about 0.53 s and the audio 10 ms before it; WebM: Opus
    starts at -7 ms. The output is still on the video's timeline."""
    info, dest, _ = encode(clip(name))
    start, duration = span(stream_of(dest, "a:0"))
    assert start == pytest.approx(0.0, abs=1e-3)
    assert duration == pytest.approx(info.duration_s, abs=TOLERANCE_S)


def test_audio_args_are_an_argument_list_with_the_protocol_whitelist(clip, small_config, tmp_path):
    source = clip("irregular")
    info = probe(source)
    args = audio.audio_args(str(source), info, small_config, tmp_path / "a.mp4")
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    assert args[args.index("-protocol_whitelist") + 1] == "file,pipe"
    assert args[args.index("-i") + 1] == str(source)
    assert f"{small_config.audio_bitrate_kbps}k" in args
