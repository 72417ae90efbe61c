"""Shared fixtures for the stage tests: tiny generated clips (made once per session),
an ffprobe packet reader, fabricated SourceInfo, and one stage-by-stage run of the
pipeline on a short clip for the stages that need encoded material.

Nothing here fakes ffmpeg: every clip is made by `vtp.synth` (or by ffmpeg itself)
in the test session and cached under the session's temporary folder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

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
        keyframes: tuple[float, ...] | None = None,
        start_s: float = 0.0,
        rotation: int = 0,
        size_bytes: int = 10_000_000,
        frames: int | None = None,
        audio: bool = True,
    ) -> SourceInfo:
        display_width, display_height = (height, width) if rotation in (90, 270) else (width, height)
        if keyframes is None:
            # Irregular, like a camera or web video: 0, 2.5, 5.7, 8.2, 11.4 ...
            keyframes = []
            t = 0.0
            while t < duration_s:
                keyframes.append(start_s + round(t, 6))
                t += 2.5 if len(keyframes) % 2 else 3.2
            keyframes = tuple(keyframes)
        rate = float(Fraction(fps))
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
            start_pts=round(start_s * 90000),
            start_s=start_s,
            frame_rate=fps,
            variable_frame_rate=False,
            frames=frames if frames is not None else round(duration_s * rate),
            duration_s=duration_s,
            keyframe_times=tuple(keyframes),
        )
        sound = AudioInfo(1, "aac", 48000, 2, start_s, duration_s) if audio else None
        return SourceInfo("mov,mp4,m4a,3gp,3g2,mj2", size_bytes, duration_s, video, sound)

    return make


@pytest.fixture(scope="session")
def stage(clip, tmp_path_factory):
    """`stage(name)`: the clip taken through split, encode, audio and merge, stage by
    stage, with SMALL_CONFIG (two rungs, 1 s GOP, 2 s chunks); made once per clip."""
    from vtp.core import audio, encode, merge, split
    from vtp.core.plan import plan_job
    from vtp.core.probe import probe

    done: dict[str, SimpleNamespace] = {}
    lock = threading.Lock()

    def run(name: str) -> SimpleNamespace:
        with lock:
            if name in done:
                return done[name]
            source = clip(name)
            work = tmp_path_factory.mktemp(f"staged_{name}")
            info = probe(source)
            plan = plan_job(info, SMALL_CONFIG)
            encoded: dict[str, list[Path]] = {r.name: [] for r in plan.renditions}
            for chunk in plan.chunks:
                piece = work / "pieces" / split.piece_name(chunk)
                split.cut_piece(source, chunk, info, piece)
                result = encode.encode_chunk(piece, chunk, plan.renditions, info, SMALL_CONFIG, work / "encoded")
                for rung, path in result.outputs.items():
                    encoded[rung].append(path)
            audio_file = None
            if info.has_audio:
                audio_file = work / "audio" / "audio.mp4"
                audio.encode_audio(source, info, SMALL_CONFIG, audio_file)
            merged = {}
            for rendition in plan.renditions:
                merged[rendition.name] = work / "merged" / f"{rendition.name}.mp4"
                merge.merge_rendition(plan.chunks, encoded[rendition.name], merged[rendition.name], info)
            done[name] = SimpleNamespace(
                source=source, info=info, plan=plan, config=SMALL_CONFIG, encoded=encoded,
                audio=audio_file, merged=merged, work=work,
            )
            return done[name]

    return run


@pytest.fixture(scope="session")
def staged(stage) -> SimpleNamespace:
    """The irregular clip (6 s, audio, 3 chunks, 2 rungs) staged up to the merged renditions."""
    result = stage("irregular")
    assert len(result.plan.chunks) == 3 and len(result.plan.renditions) == 2
    return result
