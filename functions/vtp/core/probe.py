"""Probe a source with ffprobe, cheapest first, reading only what each answer needs.

1. The container header (`-show_format -show_streams`): container, codecs, picture
   size, declared frame rate, duration. Over HTTP this is a few ranged reads.
2. The first decoded frames (a bounded read at the start): where the output timeline
   starts (the first frame a decoder really gives, after any leading packets that cannot
   be decoded or that an edit list hides) and the real frame rate of the opening frames.
3. Per chunk boundary, the source keyframe a decoder starts from when it seeks there
   (`keyframe_finder`, used by the plan): one seek and one packet each for containers with
   an index; a bounded window for those without one (MPEG-TS/PS seek by estimate).

No step lists every packet: the cost does not grow with the length of the source.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.source import ACCEPTED_CONTAINERS, AUDIO_CODECS, VIDEO_CODECS, Source
from vtp.core.tools import FfmpegFailed, IoStats, error_summary, io_stats, run_ffmpeg, run_ffprobe

# Formats that are lists of other files: reading them would follow references.
_REFERENCE_FORMATS = {"hls", "applehttp", "concat", "dash", "ffconcat", "tee", "image2", "image2pipe"}
# Containers that seek by estimate rather than by an index: a seek can land after the
# keyframe asked for, so keyframes are looked for in a window before the boundary.
_ESTIMATED_SEEK = {"mpegts", "mpeg", "mpegvideo", "dv", "wtv", "asf"}
_IMAGE_FORMATS = {"image2", "image2pipe"}
_IMAGE_CODECS = {"gif", "png", "apng", "webp", "bmp", "tiff", "jpegls", "jpeg2000"}
# Containers whose demuxer seeks by presentation time (ffmpeg's AVFMT_SEEK_TO_PTS). In the
# others, when a stream has B-frame delay, ffmpeg's -ss lands 3/23 s before the time asked
# (its DTS allowance, in microseconds as ffmpeg counts it).
_SEEKS_BY_PTS = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}
_DTS_SEEK_ALLOWANCE_US = 3 * 1_000_000 // 23
# Subtitle decoders (FFmpeg 8.1). ffprobe opens a decoder for every stream, and one not on
# the codec whitelist ends the run: a file with a subtitle track could not be probed. These
# may be opened by ffprobe (codec level only, for subtitle streams); the format-level
# whitelist still keeps them from decoding anything, and nothing in vtp reads subtitles.
_SUBTITLE_DECODERS = (
    "ssa,ass,dvbsub,dvdsub,cc_dec,pgssub,jacosub,microdvd,mov_text,mpl2,pjs,realtext,sami,stl,srt,subrip,"
    "subviewer,subviewer1,text,vplayer,webvtt,xsub,arib_caption,libzvbi_teletextdec"
)
_HEADER_TIMEOUT_S = 60.0
_FIRST_FRAMES = 48  # packets read to find the first decoded frames and their rate
_BATCH_MIN = 16  # boundaries per ffprobe, at least (each ffprobe reads the header again)
_KEYFRAME_WINDOWS_S = (0.0, 1.0, 3.0, 8.0, 20.0, 60.0)


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
    frame_rate: str  # nominal frame rate, "30000/1001"
    variable_frame_rate: bool
    origin_s: float  # source time of the first decoded frame: 0 on the output timeline
    duration_s: float  # from the origin to the end of the last frame (container's figure)
    frames_declared: int | None = None  # the container's frame count, where it keeps one

    @property
    def fps(self) -> float:
        return float(Fraction(self.frame_rate))

    @property
    def interlaced(self) -> bool:
        return self.field_order in {"tt", "bb", "tb", "bt"}


@dataclass(frozen=True)
class AudioInfo:
    stream_index: int
    codec: str
    sample_rate: int
    channels: int
    start_s: float  # on the output timeline (0 = the first video frame)


@dataclass(frozen=True)
class SourceInfo:
    format_name: str
    size_bytes: int
    duration_s: float  # of the video: the output timeline
    video: VideoInfo
    audio: AudioInfo | None
    seeks_by_estimate: bool = False
    # ffmpeg's -ss t (with -seek_timestamp) seeks to t - seek_back_s: its DTS allowance for
    # containers that seek by decode time when a stream has B-frames (0 for MP4/MOV).
    seek_back_s: float = 0.0

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceInfo":
        return cls(
            format_name=data["format_name"],
            size_bytes=data["size_bytes"],
            duration_s=data["duration_s"],
            video=VideoInfo(**data["video"]),
            audio=AudioInfo(**data["audio"]) if data.get("audio") else None,
            seeks_by_estimate=data.get("seeks_by_estimate", False),
            seek_back_s=data.get("seek_back_s", 0.0),
        )


@dataclass(frozen=True)
class Header:
    """What the container says (step 1), before anything is decoded."""

    format_name: str
    duration_s: float | None
    start_s: float
    video: dict[str, Any]
    audio: dict[str, Any] | None
    io: IoStats
    seek_back_s: float = 0.0  # see SourceInfo


def _probe_args(source: Source) -> list[str]:
    """ffprobe's input options: the source's, plus leave to open (never to feed) a subtitle track's decoder."""
    return [*source.input_args(), "-codec_whitelist:s", _SUBTITLE_DECODERS]


def read_header(source: Source) -> Header:
    try:
        result = run_ffprobe(
            ["-loglevel", "level+verbose", *_probe_args(source), "-of", "json", "-show_format", "-show_streams", source.url],
            timeout_s=_HEADER_TIMEOUT_S,
        )
    except FfmpegFailed as failure:
        raise _unreadable(failure, source) from None
    described = json.loads(result.stdout or b"{}")
    fmt = described.get("format", {})
    format_name = fmt.get("format_name", "")
    names = set(format_name.split(","))
    if names & _REFERENCE_FORMATS:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"{format_name} input (a playlist or image) is not a video file")
    if not names & ACCEPTED_CONTAINERS:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"the {format_name} container is not accepted")
    streams = described.get("streams", [])
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")),
        None,
    )
    if video is None:
        kinds = ", ".join(sorted({s.get("codec_type", "?") for s in streams})) or "no streams"
        raise PipelineError(ErrorCode.NO_VIDEO_STREAM, f"the file has no video stream ({kinds})")
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    too_large = _INVALID_PICTURE_SIZE.search(result.stderr)
    if (width <= 0 or height <= 0) and too_large:
        # A picture too large for ffmpeg to allocate: ffprobe then reports 0x0, and only its
        # log keeps the size the container declares.
        video = {**video, "width": int(too_large.group(1)), "height": int(too_large.group(2))}
    audio = next((s for s in streams if s.get("codec_type") == "audio" and s.get("codec_name") in AUDIO_CODECS), None)
    delayed = any(int(s.get("has_b_frames") or 0) > 0 for s in streams)
    return Header(
        format_name=format_name,
        duration_s=_number(fmt.get("duration")),
        start_s=_number(fmt.get("start_time")) or 0.0,
        video=video,
        audio=audio,
        io=io_stats(result),
        seek_back_s=_DTS_SEEK_ALLOWANCE_US / 1e6 if delayed and not names & _SEEKS_BY_PTS else 0.0,
    )


_INVALID_PICTURE_SIZE = re.compile(r"Picture size (\d+)x(\d+) is invalid")


def check_codecs(header: Header) -> None:
    codec = header.video.get("codec_name") or "unknown"
    if codec in _IMAGE_CODECS:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"the video is {codec} images, not a video codec")
    if codec in _NO_DECODER:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, _NO_DECODER[codec])
    if codec not in VIDEO_CODECS:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"the video codec {codec} is not accepted")


def declared_size(header: Header) -> tuple[int, int]:
    return int(header.video.get("width") or 0), int(header.video.get("height") or 0)


def declared_rate(header: Header) -> Fraction:
    """The container's frame rate: the average where it keeps one, else its base rate."""
    for key in ("avg_frame_rate", "r_frame_rate"):
        rate = _fraction(header.video.get(key))
        if rate > 0:
            return rate
    return Fraction(0)


@dataclass(frozen=True)
class OpeningFrames:
    """The first frames a decoder gives (step 2)."""

    origin_s: float
    times: tuple[float, ...]
    io: IoStats

    @property
    def rate(self) -> float | None:
        if len(self.times) < 3:
            return None
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else math.inf


def opening_frames(source: Source, header: Header) -> OpeningFrames:
    index = header.video["index"]
    io = IoStats()
    for packets in (_FIRST_FRAMES, 20 * _FIRST_FRAMES):
        try:
            result = run_ffprobe(
                [
                    "-loglevel", "level+verbose", *_probe_args(source),
                    "-select_streams", str(index),
                    "-read_intervals", f"%+#{packets}",
                    "-show_entries", "frame=best_effort_timestamp_time",
                    "-of", "csv=p=0",
                    source.url,
                ],
                timeout_s=_HEADER_TIMEOUT_S,
            )
        except FfmpegFailed as failure:
            if failure.crashed:
                raise failure.as_tool_crash("reading the first frames") from None
            raise PipelineError(
                ErrorCode.CORRUPT_INPUT, f"the first frames cannot be decoded ({_detail(failure, source)})"
            ) from None
        io += io_stats(result)
        fields = (line.split(",")[0] for line in result.stdout.decode().splitlines())
        times = sorted(float(t) for t in fields if t not in ("", "N/A"))
        if times:
            return OpeningFrames(times[0], tuple(times), io)
    raise PipelineError(ErrorCode.CORRUPT_INPUT, f"no frame could be decoded from the first {20 * _FIRST_FRAMES} packets")


def describe(header: Header, opening: OpeningFrames, size_bytes: int) -> SourceInfo:
    """The SourceInfo the plan and the encoders work from."""
    stream = header.video
    time_base = _fraction(stream.get("time_base")) or Fraction(1, 90000)
    width, height = declared_size(header)
    rotation = _rotation(stream)
    sar = _fraction(str(stream.get("sample_aspect_ratio", "1:1")).replace(":", "/")) or Fraction(1)
    display_width = round(width * sar) if sar != 1 else width
    display_height = height
    if rotation in (90, 270):
        display_width, display_height = display_height, display_width
    end = _stream_end(header)
    if end is None:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, "the container gives no duration for the video")
    duration = end - opening.origin_s
    if duration <= 0:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, "the video stream has no duration")
    rate = declared_rate(header)
    if rate <= 0:
        measured = opening.rate
        rate = Fraction(measured).limit_denominator(1001) if measured and math.isfinite(measured) else Fraction(25)
    frames = _int(stream.get("nb_frames"))
    base_rate = _fraction(stream.get("r_frame_rate"))
    variable = bool(base_rate and rate and abs(base_rate - rate) / rate > Fraction(1, 100))
    audio = None
    if header.audio is not None:
        audio_start = _number(header.audio.get("start_time"))
        audio = AudioInfo(
            stream_index=header.audio["index"],
            codec=header.audio.get("codec_name", "unknown"),
            sample_rate=int(header.audio.get("sample_rate") or 0),
            channels=int(header.audio.get("channels") or 0),
            start_s=(audio_start if audio_start is not None else opening.origin_s) - opening.origin_s,
        )
    names = set(header.format_name.split(","))
    return SourceInfo(
        format_name=header.format_name,
        size_bytes=size_bytes,
        duration_s=duration,
        video=VideoInfo(
            stream_index=stream["index"],
            codec=stream.get("codec_name", "unknown"),
            width=width,
            height=height,
            display_width=display_width,
            display_height=display_height,
            rotation=rotation,
            pix_fmt=stream.get("pix_fmt", "unknown"),
            field_order=stream.get("field_order", "unknown"),
            time_base=f"{time_base.numerator}/{time_base.denominator}",
            frame_rate=f"{rate.numerator}/{rate.denominator}",
            variable_frame_rate=variable,
            origin_s=opening.origin_s,
            duration_s=duration,
            frames_declared=frames,
        ),
        audio=audio,
        seeks_by_estimate=bool(names & _ESTIMATED_SEEK),
        seek_back_s=header.seek_back_s,
    )


def _stream_end(header: Header) -> float | None:
    stream = header.video
    start = _number(stream.get("start_time"))
    duration = _number(stream.get("duration"))
    if start is not None and duration is not None and duration > 0:
        return start + duration
    if header.duration_s is not None and header.duration_s > 0:
        return header.start_s + header.duration_s
    return None


@dataclass(frozen=True)
class KeyframeQuery:
    """Where decoding starts when a chunk's encoder seeks for `boundary_s` (source times)."""

    boundary_s: float
    seek_s: float  # the value the encoder passes to -ss
    keyframe_s: float  # the keyframe decoding starts from (<= boundary_s)


KeyframeFinder = Callable[[list[float]], list[KeyframeQuery]]


def keyframe_finder(source: Source, info: SourceInfo, *, workers: int = 8) -> tuple[KeyframeFinder, list[IoStats]]:
    """A function from boundaries (source times) to where decoding would start for each.

    Containers with an index answer with one seek and one packet per boundary, all in
    one ffprobe. Those that seek by estimate get a window before each boundary, widened
    until it holds a keyframe; the encoder then seeks to the window's start.
    """
    spent: list[IoStats] = []

    def find(boundaries: list[float]) -> list[KeyframeQuery]:
        if not boundaries:
            return []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            if not info.seeks_by_estimate:
                # Batches in parallel: over HTTP every seek is a ranged GET, and latencies add up.
                size = max(_BATCH_MIN, math.ceil(len(boundaries) / workers))
                batches = [boundaries[i : i + size] for i in range(0, len(boundaries), size)]
                answers = list(pool.map(lambda batch: _first_packets(source, info, batch, spent), batches))
                if all(answer is not None for answer in answers):
                    return [query for answer in answers for query in answer]  # type: ignore[union-attr]
            return list(pool.map(lambda b: _windowed(source, info, b, spent), boundaries))

    return find, spent


def _first_packets(source: Source, info: SourceInfo, boundaries: list[float], spent: list[IoStats]) -> list[KeyframeQuery] | None:
    # ffprobe seeks to the time asked; ffmpeg's -ss lands seek_back_s earlier, so the encoder
    # is given the boundary plus that allowance (in whole microseconds, as ffmpeg counts).
    targets_us = [round(b * 1_000_000) for b in boundaries]
    back_us = round(info.seek_back_s * 1_000_000)
    intervals = ",".join(f"{t / 1e6:.6f}%+#1" for t in targets_us)
    packets = _packets(source, info, intervals, spent)
    if len(packets) != len(boundaries):
        return None
    found = []
    for boundary, target, (pts, key) in zip(boundaries, targets_us, packets):
        if not key or pts is None or pts > boundary + 1e-6:
            return None  # not an index seek after all: look in windows
        found.append(KeyframeQuery(boundary, (target + back_us) / 1e6, pts))
    return found


def _windowed(source: Source, info: SourceInfo, boundary: float, spent: list[IoStats]) -> KeyframeQuery:
    """Seek before the boundary and decode until the first frame the decoder gives.

    Without an index, a seek lands by estimate and a packet flagged as a keyframe may be
    an I-frame a decoder cannot start from, so the answer is what decoding really gives.
    The encoder seeks with the same value and options, so it starts at the same frame.
    """
    for back in _KEYFRAME_WINDOWS_S[1:]:
        seek = boundary - back
        if seek <= info.video.origin_s:
            break
        first = _first_decoded(source, info, seek, spent)
        if first is not None and first <= boundary + 1e-6:
            return KeyframeQuery(boundary, seek, first)
    return KeyframeQuery(boundary, info.video.origin_s, info.video.origin_s)


def _first_decoded(source: Source, info: SourceInfo, seek: float, spent: list[IoStats]) -> float | None:
    time_base = Fraction(info.video.time_base)
    try:
        result = run_ffmpeg(
            [
                "-loglevel", "level+verbose", "-copyts",
                *source.input_args(), "-ss", f"{seek:.6f}", "-seek_timestamp", "1", "-noaccurate_seek",
                "-i", source.url,
                "-map", f"0:{info.video.stream_index}", "-frames:v", "1", "-vf", "scale=16:16",
                "-fps_mode", "passthrough", "-enc_time_base", f"{time_base.numerator}:{time_base.denominator}",
                "-f", "framecrc", "-",
            ],
            timeout_s=_HEADER_TIMEOUT_S,
        )
    except FfmpegFailed as failure:
        if failure.crashed:
            raise failure.as_tool_crash("finding keyframes") from None
        raise PipelineError(ErrorCode.CORRUPT_INPUT, f"seeking in the source fails ({_detail(failure, source)})") from None
    spent.append(io_stats(result))
    return first_framecrc_time(result.stdout.decode())


_FRAMECRC_TB = re.compile(r"^#tb 0: (\d+)/(\d+)", re.M)


def first_framecrc_time(text: str) -> float | None:
    """The time of the first frame in ffmpeg's framecrc output."""
    match = _FRAMECRC_TB.search(text)
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    if not match or not rows:
        return None
    return float(Fraction(int(rows[0].split(",")[1]) * int(match.group(1)), int(match.group(2))))


def _packet_rows(source: Source, info: SourceInfo, intervals: str, entries: str, *, doing: str,
                 failing: str) -> tuple[list[list[str]], IoStats]:
    """The video packets ffprobe demuxes (not decodes) in `intervals`: the `entries` of each, as
    CSV fields, and what reading them cost (verbose log: the bytes and seeks it made)."""
    try:
        result = run_ffprobe(
            [
                "-loglevel", "level+verbose", *_probe_args(source),
                "-select_streams", str(info.video.stream_index),
                "-read_intervals", intervals,
                "-show_entries", f"packet={entries}",
                "-of", "csv=p=0",
                source.url,
            ],
            timeout_s=_HEADER_TIMEOUT_S * 5,
        )
    except FfmpegFailed as failure:
        if failure.crashed:
            raise failure.as_tool_crash(doing) from None
        raise PipelineError(ErrorCode.CORRUPT_INPUT, f"{failing} fails ({_detail(failure, source)})") from None
    return [line.split(",") for line in result.stdout.decode().splitlines()], io_stats(result)


def _packets(source: Source, info: SourceInfo, intervals: str, spent: list[IoStats]) -> list[tuple[float | None, bool]]:
    rows, io = _packet_rows(source, info, intervals, "pts_time,flags", doing="finding keyframes",
                            failing="seeking in the source")
    spent.append(io)
    return [
        (float(fields[0]) if fields[0] not in ("", "N/A") else None, "K" in fields[1])
        for fields in rows if len(fields) >= 2
    ]


def packet_sizes(source: Source, info: SourceInfo, start_s: float, end_s: float) -> tuple[list[tuple[float, int, bool]], IoStats]:
    """The source's video packets between two source times, demuxed (not decoded): (pts, bytes,
    keyframe) in presentation order. How the source's own encoder spent its bits over time."""
    rows, io = _packet_rows(source, info, f"{max(start_s, 0.0):.6f}%{end_s:.6f}", "pts_time,size,flags",
                            doing="reading the source's packet sizes", failing="reading the source's packets")
    packets = []
    for fields in rows:
        if len(fields) < 3 or fields[0] in ("", "N/A"):
            continue
        try:
            packets.append((float(fields[0]), int(fields[1]), "K" in fields[2]))
        except ValueError:
            continue
    return sorted(packets), io


_NO_INDEX = "moov atom not found"
_MISDETECTED = "misdetection possible"
# Codecs ffprobe recognises that this FFmpeg build cannot decode (see source.VIDEO_CODECS).
_NO_DECODER = {"av1": "the video is AV1, which this ffmpeg build cannot decode (it has no software AV1 decoder)"}
_NOT_ON_WHITELIST = re.compile(r"\[([\w,]+) @ [^\]]*\] (?:\[\w+\] )?(Codec \((\w+)\) |Format )not on whitelist")


def _detail(failure: FfmpegFailed, source: Source) -> str:
    """ffmpeg's own words, with the source named as the user knows it (never a presigned URL)."""
    return error_summary(failure.stderr.replace(source.url, source.name))


def _unreadable(failure: FfmpegFailed, source: Source) -> PipelineError:
    if failure.crashed:
        return failure.as_tool_crash("reading the container header")
    detail = _detail(failure, source)
    refused = _NOT_ON_WHITELIST.search(failure.stderr)
    if refused and refused.group(3):
        codec = refused.group(3)
        if codec in _IMAGE_CODECS:
            return PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"the video is {codec} images, not a video codec")
        if codec in _NO_DECODER:
            return PipelineError(ErrorCode.UNSUPPORTED_INPUT, _NO_DECODER[codec])
        return PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"the file has a stream in the {codec} codec, which is not accepted")
    if refused:
        kind = refused.group(1)
        if set(kind.split(",")) & _IMAGE_FORMATS:
            return PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"{kind} input (a still image or a sequence of them) is not a video file")
        if set(kind.split(",")) & _REFERENCE_FORMATS:
            return PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"{kind} input (a playlist or list of files) is not a video file")
        return PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"the {kind} format is not accepted")
    too_large = _INVALID_PICTURE_SIZE.search(failure.stderr)
    if too_large and int(too_large.group(1)) > 0 and int(too_large.group(2)) > 0:
        return PipelineError(
            ErrorCode.RESOLUTION_TOO_HIGH,
            f"the picture is {too_large.group(1)}x{too_large.group(2)}, larger than any picture ffmpeg can decode",
        )
    if _NO_INDEX in failure.stderr and _MISDETECTED not in failure.stderr:
        # An MP4/MOV by its content (ftyp), but without its index: an upload or a recording
        # cut off before the moov atom at its end was written. (A text file named .mp4 is
        # "detected only with low score" and falls through to the next case.)
        return PipelineError(
            ErrorCode.CORRUPT_INPUT, "the MP4/MOV file has no index (moov atom): it is incomplete, cut off before its end"
        )
    if "Invalid data found" in failure.stderr or "could not find codec parameters" in failure.stderr.lower():
        return PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"not a media file ffmpeg can read ({detail})")
    return PipelineError(ErrorCode.CORRUPT_INPUT, f"the file cannot be read ({detail})")


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


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _fraction(value: Any) -> Fraction:
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
