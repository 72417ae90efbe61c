"""Probe a source with ffprobe: streams, timing, every keyframe."""

from __future__ import annotations

import bisect
import dataclasses
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.tools import SOURCE_FORMATS, SOURCE_PROTOCOLS, FfmpegFailed, ffprobe_json, run_ffprobe

# Formats that are lists of other files: reading them would follow references.
_REFERENCE_FORMATS = {"hls", "applehttp", "concat", "dash", "ffconcat", "tee", "image2", "image2pipe"}

_CONTAINER_MAGIC = (b"ftyp", b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"RIFF", b"OggS", b"FLV")


@dataclass(frozen=True)
class VideoInfo:
    stream_index: int
    codec: str
    width: int  # coded size
    height: int
    display_width: int  # after sample aspect ratio and rotation
    display_height: int
    rotation: int  # clockwise degrees to turn the decoded picture for display: 0, 90, 180, 270
    pix_fmt: str
    field_order: str
    time_base: str  # "1/15360"
    start_pts: int
    start_s: float
    frame_rate: str  # average frame rate, "30000/1001"
    variable_frame_rate: bool
    frames: int
    duration_s: float
    keyframe_times: tuple[float, ...]  # absolute source times, ascending
    last_frame_s: float = 0.0  # how long the last frame is shown

    @property
    def fps(self) -> float:
        return float(Fraction(self.frame_rate))

    @property
    def interlaced(self) -> bool:
        return self.field_order in {"tt", "bb", "tb", "bt"}

    def seconds_to_pts(self, seconds: float) -> int:
        return round(Fraction(seconds).limit_denominator(10**9) / Fraction(self.time_base))

    def keyframe_at_or_before(self, seconds: float) -> float | None:
        index = bisect.bisect_right(self.keyframe_times, seconds + 1e-6)
        return self.keyframe_times[index - 1] if index else None

    def keyframes_after(self, seconds: float) -> list[float]:
        return list(self.keyframe_times[bisect.bisect_right(self.keyframe_times, seconds + 1e-6) :])


@dataclass(frozen=True)
class AudioInfo:
    stream_index: int
    codec: str
    sample_rate: int
    channels: int
    start_s: float
    duration_s: float | None


@dataclass(frozen=True)
class SourceInfo:
    format_name: str
    size_bytes: int
    duration_s: float  # of the video stream: the output timeline
    video: VideoInfo
    audio: AudioInfo | None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceInfo":
        video = dict(data["video"])
        video["keyframe_times"] = tuple(video["keyframe_times"])
        audio = AudioInfo(**data["audio"]) if data.get("audio") else None
        return cls(
            format_name=data["format_name"],
            size_bytes=data["size_bytes"],
            duration_s=data["duration_s"],
            video=VideoInfo(**video),
            audio=audio,
        )

    def summary(self) -> dict[str, Any]:
        """The `source` block of manifest.json."""
        return {
            "duration_s": round(self.duration_s, 6),
            "width": self.video.display_width,
            "height": self.video.display_height,
            "frame_rate": self.video.frame_rate,
            "frames": self.video.frames,
            "has_audio": self.has_audio,
            "video_codec": self.video.codec,
            "container": self.format_name,
            "rotation": self.video.rotation,
            "variable_frame_rate": self.video.variable_frame_rate,
            "size_bytes": self.size_bytes,
        }


def probe(source: str | Path, *, protocols: str = SOURCE_PROTOCOLS) -> SourceInfo:
    """Describe `source`, or raise PipelineError with the reason it cannot be used."""
    source = str(source)
    size_bytes = _size_of(source)
    common = ["-protocol_whitelist", protocols, "-format_whitelist", SOURCE_FORMATS]
    try:
        described = ffprobe_json([*common, "-show_format", "-show_streams", source])
    except FfmpegFailed as failure:
        raise _unreadable(source, failure) from None

    fmt = described.get("format", {})
    format_name = fmt.get("format_name", "")
    if set(format_name.split(",")) & _REFERENCE_FORMATS:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"{format_name} input (a playlist or image) is not a video file")
    streams = described.get("streams", [])
    video_stream = next(
        (s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")),
        None,
    )
    if video_stream is None:
        kinds = ", ".join(sorted({s.get("codec_type", "?") for s in streams})) or "no streams"
        raise PipelineError(ErrorCode.NO_VIDEO_STREAM, f"the file has no video stream ({kinds})")
    if video_stream.get("codec_name") in (None, "none", "unknown"):
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, "the video codec is unknown to ffmpeg")

    video = _video_info(source, common, video_stream)
    audio_stream = next((s for s in streams if s.get("codec_type") == "audio"), None)
    audio = _audio_info(audio_stream) if audio_stream else None
    return SourceInfo(
        format_name=format_name,
        size_bytes=size_bytes,
        duration_s=video.duration_s,
        video=video,
        audio=audio,
    )


def _size_of(source: str) -> int:
    try:
        size = os.stat(source).st_size
    except FileNotFoundError:
        raise PipelineError(ErrorCode.INPUT_NOT_FOUND, f"no such file: {source}") from None
    except OSError as error:
        raise PipelineError(ErrorCode.INPUT_NOT_FOUND, f"cannot read {source}: {error.strerror}") from None
    if size == 0:
        raise PipelineError(ErrorCode.EMPTY_INPUT, "the file is empty (0 bytes)")
    return size


def _unreadable(source: str, failure: FfmpegFailed) -> PipelineError:
    try:
        with open(source, "rb") as handle:
            head = handle.read(16)
    except OSError:
        head = b""
    looks_like_media = any(magic in head for magic in _CONTAINER_MAGIC) or head[:1] == b"\x47"
    detail = failure.stderr.strip().splitlines()[-1] if failure.stderr.strip() else "unreadable"
    if "not on whitelist" in failure.stderr:
        return PipelineError(ErrorCode.UNSUPPORTED_INPUT, "this kind of file (a playlist, list or image) is not a video")
    if looks_like_media:
        return PipelineError(ErrorCode.CORRUPT_INPUT, f"the file looks like a video container but cannot be read ({detail})")
    return PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"not a media file ffmpeg can read ({detail})")


def _video_info(source: str, common: list[str], stream: dict[str, Any]) -> VideoInfo:
    index = stream["index"]
    time_base = Fraction(stream.get("time_base", "1/90000"))
    try:
        listing = run_ffprobe(
            [
                *common,
                "-fflags", "+genpts",
                "-v", "error",
                "-select_streams", str(index),
                "-show_entries", "packet=pts,dts,duration,flags",
                "-of", "csv=p=0",
                source,
            ],
            timeout_s=1800,
        )
    except FfmpegFailed as failure:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, f"cannot read the video packets ({failure})") from None
    if "partial file" in listing.stderr or "Invalid data found" in listing.stderr:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, "the video data is truncated or damaged")

    pts_list: list[int] = []
    keyframes: list[int] = []
    last_duration = 0
    for line in listing.stdout.decode().splitlines():
        fields = line.split(",")
        if len(fields) < 4:
            continue
        pts_text, dts_text, duration_text, flags = fields[:4]
        stamp = pts_text if pts_text not in ("", "N/A") else dts_text
        if stamp in ("", "N/A"):
            continue
        pts = int(stamp)
        pts_list.append(pts)
        if "K" in flags:
            keyframes.append(pts)
        if duration_text not in ("", "N/A"):
            last_duration = int(duration_text)
    if not pts_list:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, "the video stream has no frames")
    if len(pts_list) < 2:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, "a single picture is not a video")
    if not keyframes:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, "the video stream has no keyframe to start decoding from")

    ordered = sorted(pts_list)
    start_pts = ordered[0]
    deltas = [b - a for a, b in zip(ordered, ordered[1:]) if b > a]
    typical_delta = sorted(deltas)[len(deltas) // 2] if deltas else 1
    end_pts = ordered[-1] + (last_duration or typical_delta)
    duration = float((end_pts - start_pts) * time_base)
    if duration <= 0:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, "the video stream has no duration")
    frames = len(pts_list)
    average_rate = Fraction(frames) / ((end_pts - start_pts) * time_base)
    declared = stream.get("avg_frame_rate") or stream.get("r_frame_rate") or "0/1"
    frame_rate = _rate_text(declared, average_rate)
    jitter = max(deltas) - min(deltas) if deltas else 0
    variable = jitter * time_base > Fraction(1, 1000) and len(set(deltas)) > 2

    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if width <= 0 or height <= 0:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, "the video stream has no picture size")
    rotation = _rotation(stream)
    sar = Fraction(stream.get("sample_aspect_ratio", "1:1").replace(":", "/")) if ":" in stream.get(
        "sample_aspect_ratio", ""
    ) else Fraction(1)
    if sar <= 0:
        sar = Fraction(1)
    display_width = round(width * sar) if sar != 1 else width
    display_height = height
    if rotation in (90, 270):
        display_width, display_height = display_height, display_width

    return VideoInfo(
        stream_index=index,
        codec=stream.get("codec_name", "unknown"),
        width=width,
        height=height,
        display_width=display_width,
        display_height=display_height,
        rotation=rotation,
        pix_fmt=stream.get("pix_fmt", "unknown"),
        field_order=stream.get("field_order", "unknown"),
        time_base=f"{time_base.numerator}/{time_base.denominator}",
        start_pts=start_pts,
        start_s=float(start_pts * time_base),
        frame_rate=frame_rate,
        variable_frame_rate=variable,
        frames=frames,
        duration_s=duration,
        keyframe_times=tuple(float(k * time_base) for k in sorted(set(keyframes))),
        last_frame_s=float((last_duration or typical_delta) * time_base),
    )


def _rate_text(declared: str, measured: Fraction) -> str:
    try:
        rate = Fraction(declared)
    except (ValueError, ZeroDivisionError):
        rate = Fraction(0)
    # Trust the container's rate when it agrees with the frames actually there.
    if rate > 0 and abs(rate - measured) / rate < Fraction(1, 100):
        return f"{rate.numerator}/{rate.denominator}"
    measured = measured.limit_denominator(1001)
    return f"{measured.numerator}/{measured.denominator}"


def _rotation(stream: dict[str, Any]) -> int:
    degrees = None
    for side_data in stream.get("side_data_list", []):
        if "rotation" in side_data:
            degrees = float(side_data["rotation"])
    if degrees is None and "rotate" in stream.get("tags", {}):
        degrees = -float(stream["tags"]["rotate"])
    if degrees is None:
        return 0
    # ffprobe reports the display matrix angle counter-clockwise; players turn clockwise by its negative.
    return int(round(-degrees / 90.0)) * 90 % 360


def _audio_info(stream: dict[str, Any]) -> AudioInfo:
    duration = stream.get("duration")
    return AudioInfo(
        stream_index=stream["index"],
        codec=stream.get("codec_name", "unknown"),
        sample_rate=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
        start_s=float(stream.get("start_time") or 0.0),
        duration_s=float(duration) if duration not in (None, "N/A") else None,
    )
