"""vtp.synth: every variant of synthetic clip is what its ClipSpec promises, per ffprobe."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from vtp.core.tools import ffprobe_json, run_ffmpeg
from vtp.synth import ClipSpec, generate_clip

REPO = Path(__file__).resolve().parents[2]
SMALL = {"duration_s": 2.0, "width": 320, "height": 240}


def _probe(path: Path) -> dict:
    return ffprobe_json(["-show_streams", "-show_format", str(path)])


def _streams(info: dict, kind: str) -> list[dict]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def _video_packets(path: Path) -> list[dict]:
    info = ffprobe_json(["-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", str(path)])
    return sorted(info["packets"], key=lambda p: float(p["pts_time"]))


def _keyframe_times(path: Path) -> list[float]:
    return [float(p["pts_time"]) for p in _video_packets(path) if "K" in p["flags"]]


def _decodes_cleanly(path: Path) -> None:
    result = run_ffmpeg(["-v", "error", "-i", str(path), "-f", "null", "-"])
    assert result.stderr.strip() == ""


def _check_audio(info: dict, codec: str) -> None:
    (audio,) = _streams(info, "audio")
    assert audio["codec_name"] == codec
    assert int(audio["sample_rate"]) == 48000
    assert audio["channels"] == 2


def test_default_mp4_is_h264_aac_with_exact_duration(tmp_path: Path) -> None:
    path = generate_clip(tmp_path / "clip.mp4", ClipSpec(**SMALL))
    info = _probe(path)
    (video,) = _streams(info, "video")
    assert video["codec_name"] == "h264"
    assert (video["width"], video["height"]) == (320, 240)
    assert video["pix_fmt"] == "yuv420p"
    assert video["r_frame_rate"] == video["avg_frame_rate"] == "30/1"
    assert int(video["nb_frames"]) == 60
    assert video["has_b_frames"] > 0  # veryfast, not ultrafast: B-frames like real video
    _check_audio(info, "aac")
    assert "mp4" in info["format"]["format_name"]
    assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.05)
    _decodes_cleanly(path)


def test_content_moves_and_audio_is_not_silent(tmp_path: Path) -> None:
    path = generate_clip(tmp_path / "clip.mp4", ClipSpec(**SMALL))
    # Grainy moving content: far from the few kbit/s of a static card.
    assert int(_probe(path)["format"]["bit_rate"]) > 300_000
    frames = run_ffmpeg(
        ["-v", "error", "-i", str(path), "-vf", "scale=32:24", "-pix_fmt", "gray", "-f", "rawvideo", "-"]
    ).stdout
    size = 32 * 24
    first, middle, last = frames[:size], frames[30 * size : 31 * size], frames[59 * size : 60 * size]
    for a, b in ((first, middle), (middle, last)):
        assert sum(abs(x - y) for x, y in zip(a, b)) / size > 4  # mean luma change per pixel
    volume = run_ffmpeg(["-i", str(path), "-vn", "-af", "volumedetect", "-f", "null", "-"]).stderr
    mean_db = float(volume.split("mean_volume:")[1].split("dB")[0])
    assert -35 < mean_db < -6


def test_odd_size_h264_is_444_and_decodes(tmp_path: Path) -> None:
    spec = ClipSpec(duration_s=2.0, width=641, height=361, fps="25")
    assert spec.effective_pix_fmt == "yuv444p"
    path = generate_clip(tmp_path / "odd.mp4", spec)
    (video,) = _streams(_probe(path), "video")
    assert (video["width"], video["height"]) == (641, 361)
    assert video["codec_name"] == "h264"
    assert video["pix_fmt"] == "yuv444p"
    assert video["r_frame_rate"] == "25/1"
    _decodes_cleanly(path)


def test_no_audio(tmp_path: Path) -> None:
    path = generate_clip(tmp_path / "silent.mp4", ClipSpec(**SMALL, audio=False))
    info = _probe(path)
    assert len(_streams(info, "video")) == 1
    assert _streams(info, "audio") == []


@pytest.mark.parametrize(("container", "rotation", "reported"), [("mp4", 90, 90), ("mov", 270, -90)])
def test_rotation_is_a_display_matrix(tmp_path: Path, container: str, rotation: int, reported: int) -> None:
    path = generate_clip(tmp_path / f"rotated.{container}", ClipSpec(**SMALL, container=container, rotation=rotation))
    (video,) = _streams(_probe(path), "video")
    # The picture is stored unrotated; only the display matrix turns it.
    assert (video["width"], video["height"]) == (320, 240)
    matrices = [d for d in video.get("side_data_list", []) if d.get("side_data_type") == "Display Matrix"]
    assert [d["rotation"] for d in matrices] == [reported]
    assert not list(tmp_path.glob(".*unrotated*"))  # the intermediate file is gone


def test_vfr_timestamps_are_irregular(tmp_path: Path) -> None:
    path = generate_clip(tmp_path / "vfr.mp4", ClipSpec(**SMALL, vfr=True))
    (video,) = _streams(_probe(path), "video")
    assert video["r_frame_rate"] != video["avg_frame_rate"]
    assert float(Fraction(video["avg_frame_rate"])) == pytest.approx(30, rel=0.05)
    times = [float(p["pts_time"]) for p in _video_packets(path)]
    deltas = [b - a for a, b in zip(times, times[1:])]
    assert min(deltas) > 0
    assert max(deltas) - min(deltas) > 0.015  # 1/30 s frames, jittered by up to half a frame
    assert len({round(d, 4) for d in deltas}) > 10


def test_webm_is_vp9_opus(tmp_path: Path) -> None:
    path = generate_clip(tmp_path / "clip.webm", ClipSpec(**SMALL, container="webm"))
    info = _probe(path)
    assert "webm" in info["format"]["format_name"]
    (video,) = _streams(info, "video")
    assert video["codec_name"] == "vp9"
    assert (video["width"], video["height"]) == (320, 240)
    _check_audio(info, "opus")
    _decodes_cleanly(path)


def test_mpg_is_mpeg2_mp2_in_program_stream(tmp_path: Path) -> None:
    path = generate_clip(tmp_path / "clip.mpg", ClipSpec(**SMALL, container="mpg", fps="30000/1001"))
    info = _probe(path)
    assert info["format"]["format_name"] == "mpeg"  # MPEG-PS
    (video,) = _streams(info, "video")
    assert video["codec_name"] == "mpeg2video"
    assert video["r_frame_rate"] == "30000/1001"
    _check_audio(info, "mp2")
    _decodes_cleanly(path)


def test_fixed_gop_puts_keyframes_on_the_grid(tmp_path: Path) -> None:
    path = generate_clip(tmp_path / "gop.mp4", ClipSpec(duration_s=3.0, width=160, height=120, source_gop_s=1.0))
    assert _keyframe_times(path) == pytest.approx([0.0, 1.0, 2.0], abs=1e-3)


def test_default_gop_is_irregular(tmp_path: Path) -> None:
    # Shot changes at 3.3, 5.1 and 6.6 s make x264 cut keyframes off any grid.
    path = generate_clip(tmp_path / "free.mp4", ClipSpec(duration_s=7.0, width=160, height=120, audio=False))
    keyframes = _keyframe_times(path)
    assert len(keyframes) >= 3
    gaps = [b - a for a, b in zip(keyframes, keyframes[1:])]
    assert max(gaps) - min(gaps) > 0.3


def _gray_frames(path: Path, width: int = 80, height: int = 45) -> list[bytes]:
    raw = run_ffmpeg(
        ["-v", "error", "-i", str(path), "-vf", f"scale={width}:{height}", "-pix_fmt", "gray", "-f", "rawvideo", "-"]
    ).stdout
    size = width * height
    return [raw[i : i + size] for i in range(0, len(raw) - size + 1, size)]


def _mean_change(a: bytes, b: bytes) -> float:
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def test_screen_kind_is_low_motion_against_grain(tmp_path: Path) -> None:
    """The "screen" kind (made here through generate.py --kind) is what a screen recording is to
    an encoder: at the same size and CRF a small fraction of the grain kind's bytes, and
    consecutive frames nearly equal; yet not a still card (text appears, things move)."""
    screen = tmp_path / "screen.mp4"
    subprocess.run(
        [sys.executable, str(REPO / "sample_media" / "generate.py"), str(screen),
         "--duration", "3", "--size", "320x180", "--no-audio", "--kind", "screen"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    grain = generate_clip(tmp_path / "grain.mp4", ClipSpec(duration_s=3.0, width=320, height=180, audio=False))
    (video,) = _streams(_probe(screen), "video")
    assert (video["codec_name"], video["width"], video["height"], int(video["nb_frames"])) == ("h264", 320, 180, 90)
    _decodes_cleanly(screen)

    # Both are x264 veryfast CRF 23: the bytes say how hard each is to encode (measured 20 and
    # 690 kbit/s).
    screen_rate = int(_streams(_probe(screen), "video")[0]["bit_rate"])
    grain_rate = int(_streams(_probe(grain), "video")[0]["bit_rate"])
    assert screen_rate * 10 < grain_rate

    # Mean luma change per pixel between consecutive frames (measured 0.12 against 18).
    screen_frames, grain_frames = _gray_frames(screen), _gray_frames(grain)
    screen_motion = [_mean_change(a, b) for a, b in zip(screen_frames, screen_frames[1:])]
    grain_motion = [_mean_change(a, b) for a, b in zip(grain_frames, grain_frames[1:])]
    assert sum(screen_motion) / len(screen_motion) * 20 < sum(grain_motion) / len(grain_motion)
    assert max(screen_motion) < 2
    # Not a still: over the clip, text is typed and the pointer moves.
    assert _mean_change(screen_frames[0], screen_frames[-1]) > 2
    assert sum(1 for change in screen_motion if change > 0) > len(screen_motion) / 2


@pytest.mark.parametrize("spec", [
    {"width": 641, "height": 361, "fps": "25"},  # odd size: 4:4:4
    {"container": "webm", "vfr": True},
    {"width": 16, "height": 16},
])  # fmt: skip
def test_screen_kind_takes_every_variant(tmp_path: Path, spec: dict) -> None:
    clip = ClipSpec(**{**SMALL, "duration_s": 1.0, **spec}, kind="screen")
    path = generate_clip(tmp_path / f"screen.{clip.container}", clip)
    (video,) = _streams(_probe(path), "video")
    assert (video["width"], video["height"]) == (clip.width, clip.height)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "cartoon"},
        {"duration_s": 0},
        {"width": 8},
        {"fps": "thirty"},
        {"container": "avi"},
        {"rotation": 45},
        {"container": "webm", "rotation": 90},
        {"container": "mpg", "vfr": True},
        {"container": "mpg", "fps": "15"},
        {"source_gop_s": 0},
    ],
)
def test_impossible_specs_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClipSpec(**kwargs)


def test_cli_writes_a_clip(tmp_path: Path) -> None:
    out = tmp_path / "cli.mkv"
    subprocess.run(
        [sys.executable, str(REPO / "sample_media" / "generate.py"), str(out),
         "--duration", "1", "--size", "160x120", "--fps", "25", "--no-audio", "--gop", "0.4"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    info = _probe(out)
    assert "matroska" in info["format"]["format_name"]
    (video,) = _streams(info, "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 160, 120)
    assert _streams(info, "audio") == []
    assert _keyframe_times(out) == pytest.approx([0.0, 0.4, 0.8], abs=1e-3)


def test_sample_clips_are_as_documented() -> None:
    """The committed real clips: what sample_media/README.md says they are."""
    bunny = _probe(REPO / "sample_media" / "big_buck_bunny_720p_16s.mp4")
    (video,) = _streams(bunny, "video")
    (audio,) = _streams(bunny, "audio")
    assert (video["codec_name"], video["width"], video["height"], video["r_frame_rate"]) == ("h264", 1280, 720, "24/1")
    assert (audio["codec_name"], int(audio["sample_rate"]), audio["channels"]) == ("aac", 44100, 2)
    assert float(bunny["format"]["duration"]) == pytest.approx(16.375, abs=0.01)
    city = _probe(REPO / "sample_media" / "city_timelapse_720x404_noaudio.mp4")
    (video,) = _streams(city, "video")
    assert (video["codec_name"], video["width"], video["height"], video["r_frame_rate"]) == ("h264", 720, 404, "25/1")
    assert _streams(city, "audio") == []
