"""Shared fixtures for the stage tests: tiny generated clips (made once per session),
an ffprobe packet reader, fabricated SourceInfo and keyframe finders, and one run of the
local pipeline per clip for the tests that need encoded material.

Nothing here fakes ffmpeg: every clip is made by `vtp.synth` (or by ffmpeg itself)
in the test session and cached under the session's temporary folder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from vtp.core.config import PipelineConfig, Rung
from vtp.core.probe import AudioInfo, SourceInfo, VideoInfo
from vtp.core.tools import ffprobe_json, run_ffmpeg
from vtp.synth import ClipSpec, generate_clip

# Short GOP, chunks and segments so that a few seconds of video make several of each.
SMALL_LADDER = (Rung("180p", 180, 400, 30), Rung("120p", 120, 250, 32))
SMALL_CONFIG = PipelineConfig(
    ladder=SMALL_LADDER, preset="ultrafast", gop_s=1.0, chunk_s=2.0, segment_s=2.0
)

# name -> (file name, spec). Generated lazily, once per session.
CLIPS: dict[str, tuple[str, ClipSpec]] = {
    # H.264 + AAC whose keyframes are re-placed irregularly, off every grid (IRREGULAR_KEYFRAMES).
    "irregular": ("irregular.mp4", ClipSpec(duration_s=6.0, width=320, height=180)),
    "silent": ("silent.mp4", ClipSpec(duration_s=2.0, width=320, height=180, audio=False)),
    "ntsc": ("ntsc.mp4", ClipSpec(duration_s=2.0, width=320, height=180, fps="30000/1001", audio=False)),
    "rot90": ("rot90.mp4", ClipSpec(duration_s=1.0, width=320, height=180, rotation=90, audio=False)),
    "rot270": ("rot270.mp4", ClipSpec(duration_s=1.0, width=320, height=180, rotation=270, audio=False)),
    "vfr": ("vfr.mp4", ClipSpec(duration_s=4.0, width=320, height=180, vfr=True, audio=False)),
    "webm": ("vp9.webm", ClipSpec(duration_s=2.0, width=320, height=180, container="webm")),
    # MPEG-2 in MPEG-PS: the video starts at about 0.53 s, open GOPs, B-frames.
    "mpg": ("mpeg2.mpg", ClipSpec(duration_s=4.0, width=320, height=180, container="mpg")),
    # H.264 + AAC in MPEG-TS: no index, seeks by estimate; its timestamps start at 1.4 s.
    "ts": ("h264.ts", ClipSpec(duration_s=6.0, width=320, height=180, container="ts")),
}


# Where the "irregular" clip's keyframes are (x264's own scene cuts vary with the content).
IRREGULAR_KEYFRAMES = (0.0, 1.3, 2.1, 3.7, 5.2)


def _reencode_with_keyframes(base: Path, dest: Path, keyframes: tuple[float, ...]) -> Path:
    run_ffmpeg([
        "-v", "error", "-i", str(base), "-map", "0", "-c:v", "libx264", "-preset", "veryfast", "-crf", "26",
        "-pix_fmt", "yuv420p", "-force_key_frames", ",".join(f"{t:g}" for t in keyframes),
        "-x264-params", "scenecut=0:keyint=600:min-keyint=1", "-c:a", "copy", "-movflags", "+faststart", str(dest),
    ])
    return dest


@pytest.fixture(scope="session")
def irregular_keyframes() -> tuple[float, ...]:
    return IRREGULAR_KEYFRAMES


@pytest.fixture(scope="session")
def small_config() -> PipelineConfig:
    return SMALL_CONFIG


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """`clip(name)` -> path of the generated clip `name` of CLIPS (made on first use)."""
    folder = tmp_path_factory.mktemp("clips")
    made: dict[str, Path] = {}
    lock = threading.Lock()

    def get(name: str) -> Path:
        with lock:
            if name not in made:
                file_name, spec = CLIPS[name]
                if name == "irregular":
                    base = generate_clip(folder / f"base_{file_name}", spec)
                    made[name] = _reencode_with_keyframes(base, folder / file_name, IRREGULAR_KEYFRAMES)
                else:
                    made[name] = generate_clip(folder / file_name, spec)
            return made[name]

    return get


@pytest.fixture(scope="session")
def ffmpeg():
    """`ffmpeg(*args)`: run ffmpeg (through vtp's runner) and return its stderr."""

    def run(*args: str) -> str:
        return run_ffmpeg([*args]).stderr

    return run


@dataclass(frozen=True)
class Packet:
    pts: float
    key: bool
    duration: float


@pytest.fixture(scope="session")
def packets():
    """`packets(path, stream="v:0")` -> the stream's packets, in presentation order
    (`decode_order=True`: in file order). Presentation times are completed by ffprobe
    (`-fflags +genpts`) where the container leaves some out (MPEG-PS)."""

    def read(path: Path, stream: str = "v:0", *, decode_order: bool = False) -> list[Packet]:
        listing = ffprobe_json(
            ["-fflags", "+genpts", "-select_streams", stream,
             "-show_entries", "packet=pts_time,duration_time,flags", str(path)]
        )["packets"]
        found = [
            Packet(float(p["pts_time"]), "K" in p.get("flags", ""), float(p.get("duration_time") or 0.0))
            for p in listing
            if p.get("pts_time") not in (None, "N/A")
        ]
        return found if decode_order else sorted(found, key=lambda p: p.pts)

    return read


@pytest.fixture(scope="session")
def stream_of():
    """`stream_of(path, stream="v:0")` -> ffprobe's description of that stream."""

    def describe(path: Path, stream: str = "v:0") -> dict:
        streams = ffprobe_json(["-select_streams", stream, "-show_streams", str(path)])["streams"]
        assert streams, f"{path} has no {stream} stream"
        return streams[0]

    return describe


@pytest.fixture(scope="session")
def fake_source():
    """`fake_source(width=1920, height=1080, ...)` -> a SourceInfo made up without ffmpeg."""

    def make(
        width: int = 1920,
        height: int = 1080,
        *,
        duration_s: float = 60.0,
        fps: str = "30/1",
        origin_s: float = 0.0,
        rotation: int = 0,
        size_bytes: int = 10_000_000,
        frames: int | None = None,
        audio: bool = True,
        format_name: str = "mov,mp4,m4a,3gp,3g2,mj2",
    ) -> SourceInfo:
        display_width, display_height = (height, width) if rotation in (90, 270) else (width, height)
        video = VideoInfo(
            stream_index=0,
            codec="h264",
            width=width,
            height=height,
            display_width=display_width,
            display_height=display_height,
            rotation=rotation,
            pix_fmt="yuv420p",
            field_order="progressive",
            time_base="1/90000",
            frame_rate=fps,
            variable_frame_rate=False,
            origin_s=origin_s,
            duration_s=duration_s,
            frames_declared=frames,
        )
        sound = AudioInfo(1, "aac", 48000, 2, 0.0) if audio else None
        return SourceInfo(format_name, size_bytes, duration_s, video, sound)

    return make


@pytest.fixture(scope="session")
def keyframes_every():
    """`keyframes_every(times)` -> a keyframe finder (as the plan takes) over fixed keyframe times."""
    from vtp.core.probe import KeyframeQuery

    def make(times: tuple[float, ...]):
        ordered = sorted(times)

        def find(boundaries: list[float]) -> list[KeyframeQuery]:
            found = []
            for boundary in boundaries:
                before = [t for t in ordered if t <= boundary + 1e-9]
                found.append(KeyframeQuery(boundary, boundary, before[-1] if before else ordered[0]))
            return found

        return find

    return make


@pytest.fixture(scope="session")
def run_pipeline(clip, tmp_path_factory):
    """`run_pipeline(name, config=SMALL_CONFIG)` -> the JobResult of the local runner on clip `name`
    (made once per clip and config)."""
    from vtp.local.runner import run_job

    done: dict[tuple, object] = {}
    lock = threading.Lock()

    def run(name: str, config: PipelineConfig = SMALL_CONFIG):
        key = (name, config)
        with lock:
            if key not in done:
                out = tmp_path_factory.mktemp(f"job_{name}")
                done[key] = run_job(clip(name), out, config=config, workers=2)
            return done[key]

    return run
