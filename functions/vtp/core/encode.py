"""Encode one chunk: read its time range of the source, decode it once, and write the
final CMAF segments of every rung and of the audio, its thumbnail tiles and (if its time
falls in the chunk) the poster.

One ffmpeg process per chunk:

- the video is decoded from the keyframe before the chunk (pre-roll), trimmed to the
  chunk's frames by their source time, turned upright, and scaled to every rung; each rung
  is a fragmented MP4 with a fragment per keyframe (keyframes forced on the GOP grid, closed
  GOPs, no scene cuts) and the source's own timestamps (`-enc_time_base`), with negative
  composition offsets so that a segment's first frame is presented at its start;
- the audio of the chunk's range is decoded from 2 s before it and encoded from there, and
  only the AAC frames of the chunk itself are kept (`noise=drop`): every frame is encoded
  with the signal before it, so the chunks' frames join with no gap, no overlap and no
  priming, on a grid of 1024 samples from 0;
- the frame after the chunk is looked at (never encoded): where it is tells how long the
  chunk's last frame is shown, across any hole in a VFR source.

Then the fragments are grouped into segments on the segment grid and written under the
job's output prefix with deterministic names (a retried encoder overwrites its own files).
Every rung's init segment must be byte-identical in every chunk: its hash is in the result
and the publisher checks it.
"""

from __future__ import annotations

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

from vtp.core import fmp4
from vtp.core.config import PipelineConfig, RateControl
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import StageFigures
from vtp.core.plan import BOUNDARY_EPSILON_S, Chunk, ChunkRates, ChunkRework, Rendition, short_tail_s
from vtp.core.probe import SourceInfo, first_framecrc_time
from vtp.core.quality import RUN as RUN_FRAMES
from vtp.core.quality import RungScores, reference_chain, sample_times, score_chunk
from vtp.core.source import Source
from vtp.core.storage import ObjectStore, content_type_for
from vtp.core.tools import FfmpegFailed, IoStats, ff, io_stats, run_ffmpeg, vmaf_binary

AUDIO_NAME = "audio"
THUMBNAILS_DIR = "thumbnails"
POSTER = "poster.jpg"
AAC_FRAME = 1024
AUDIO_PREROLL_S = 2.0  # measured: joins as clean as one pass (see README)
_AUDIO_POSTROLL_FRAMES = 8
_FRAGMENT_FLAGS = "+frag_keyframe+empty_moov+default_base_moof+frag_discont+negative_cts_offsets"


def init_key(track: str) -> str:
    return f"{track}/init.mp4"


def segment_key(track: str, start: int) -> str:
    # Named by the segment's start in the track's timescale: DASH's $Time$ and HLS alike.
    return f"{track}/segment_{start}.m4s"


def sprite_key(chunk_index: int) -> str:
    return f"{THUMBNAILS_DIR}/sprite_{chunk_index:05d}.jpg"


@dataclass(frozen=True)
class SegmentFacts:
    start: int  # presentation time of the first frame, track timescale
    frames: int
    bytes: int
    keyframe_first: bool = True

    def to_list(self) -> list[int]:
        return [self.start, self.frames, self.bytes, int(self.keyframe_first)]

    @classmethod
    def from_list(cls, values: list[int]) -> "SegmentFacts":
        return cls(values[0], values[1], values[2], bool(values[3]))


@dataclass(frozen=True)
class TrackFacts:
    """One track (a rung or the audio) of one chunk."""

    timescale: int
    init_sha256: str
    codec: str
    segments: tuple[SegmentFacts, ...]
    end: int  # where the chunk's last frame stops being shown, track timescale

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timescale": self.timescale, "init_sha256": self.init_sha256, "codec": self.codec,
            "segments": [s.to_list() for s in self.segments], "end": self.end,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrackFacts":
        return cls(data["timescale"], data["init_sha256"], data["codec"],
                   tuple(SegmentFacts.from_list(s) for s in data["segments"]), data["end"])


@dataclass(frozen=True)
class Thumbnails:
    sprite: str | None  # key of the chunk's sprite (rows of tiles), None if it has no tile
    times: tuple[float, ...]  # output times of its tiles, left to right, then top to bottom
    tile_width: int
    tile_height: int
    columns: int = 0  # tiles in a row of the sprite; 0: all in one row

    @property
    def row_length(self) -> int:
        return self.columns or len(self.times)

    def to_dict(self) -> dict[str, Any]:
        return {"sprite": self.sprite, "times": list(self.times), "tile_width": self.tile_width,
                "tile_height": self.tile_height, "columns": self.columns}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Thumbnails":
        return cls(data["sprite"], tuple(data["times"]), data["tile_width"], data["tile_height"], data.get("columns", 0))


# A JPEG is at most 65,500 pixels either way.
SPRITE_ROW_TILES = 10


def sprite_columns(count: int, tile_width: int, tile_height: int) -> int:
    """Tiles in a row of a chunk's sprite: one row for a usual chunk; a grid about as wide
    as it is high where a chunk spans a long time (a hole in a VFR source can put an hour
    in one chunk: 1800 tiles in one row would be a JPEG 288,000 pixels wide)."""
    if count <= SPRITE_ROW_TILES:
        return max(count, 1)
    return min(count, max(SPRITE_ROW_TILES, math.ceil(math.sqrt(count * tile_height / tile_width))))


@dataclass(frozen=True)
class ChunkResult:
    """An encoder's result: everything the publisher needs, no media."""

    index: int
    start_s: float
    end_s: float | None
    video: dict[str, TrackFacts]
    audio: TrackFacts | None
    thumbnails: Thumbnails
    poster: str | None
    next_frame: int | None  # first frame after the chunk, video timescale; None: the chunk ends the source
    frames_decoded: int
    preroll_s: float
    figures: StageFigures  # the whole chunk: both processes, the uploads
    started_at: float = 0.0  # epoch seconds
    ended_at: float = 0.0
    attempt: int = 0
    worker: str = ""
    wait_s: float = 0.0  # queued before started_at (a local worker's turn; on AWS, from the Map's dispatch)
    cold_start: bool | None = None  # on AWS: this invocation started a new Lambda environment
    audio_figures: StageFigures | None = None  # the audio's own process (part of `figures`)
    # The first complaint of ffmpeg's demuxer about the source's container in this chunk
    # ("Packet corrupt ..."): where the chunks then do not fit together, the source is blamed.
    source_damage: str = ""
    quality: dict[str, RungScores] | None = None  # per rung: the scored frames (vtp.core.quality)
    quality_figures: StageFigures | None = None  # the scorer's own process (its CPU is in `figures`)
    rates: ChunkRates | None = None  # a fitted ladder: this chunk's rate factor per rung, and its basis
    # Rungs of this chunk encoded again after the encode map (vtp.core.rework): the decision,
    # the second encode's own figures (not in `figures`) and when it ran.
    rework: ChunkRework | None = None
    rework_figures: StageFigures | None = None
    rework_started_at: float = 0.0
    rework_ended_at: float = 0.0

    @property
    def first_frame(self) -> int:
        return next(iter(self.video.values())).segments[0].start

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "start_s": self.start_s, "end_s": self.end_s,
            "video": {name: facts.to_dict() for name, facts in self.video.items()},
            "audio": self.audio.to_dict() if self.audio else None,
            "thumbnails": self.thumbnails.to_dict(), "poster": self.poster, "next_frame": self.next_frame,
            "frames_decoded": self.frames_decoded, "preroll_s": round(self.preroll_s, 3),
            "figures": self.figures.to_dict(), "started_at": self.started_at, "ended_at": self.ended_at,
            "attempt": self.attempt, "worker": self.worker, "wait_s": round(self.wait_s, 3),
            "cold_start": self.cold_start,
            "audio_figures": self.audio_figures.to_dict() if self.audio_figures else None,
            "source_damage": self.source_damage,
            "quality": {name: scores.to_dict() for name, scores in self.quality.items()} if self.quality else None,
            "quality_figures": self.quality_figures.to_dict() if self.quality_figures else None,
            "rates": self.rates.to_dict() if self.rates else None,
            "rework": self.rework.to_dict() if self.rework else None,
            "rework_figures": self.rework_figures.to_dict() if self.rework_figures else None,
            "rework_started_at": self.rework_started_at, "rework_ended_at": self.rework_ended_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChunkResult":
        return cls(
            index=data["index"], start_s=data["start_s"], end_s=data["end_s"],
            video={name: TrackFacts.from_dict(facts) for name, facts in data["video"].items()},
            audio=TrackFacts.from_dict(data["audio"]) if data.get("audio") else None,
            thumbnails=Thumbnails.from_dict(data["thumbnails"]), poster=data.get("poster"),
            next_frame=data.get("next_frame"), frames_decoded=data.get("frames_decoded", 0),
            preroll_s=data.get("preroll_s", 0.0), figures=StageFigures.from_dict(data.get("figures", {})),
            started_at=data.get("started_at", 0.0), ended_at=data.get("ended_at", 0.0),
            attempt=data.get("attempt", 0), worker=data.get("worker", ""),
            wait_s=data.get("wait_s", 0.0), cold_start=data.get("cold_start"),
            audio_figures=StageFigures.from_dict(data["audio_figures"]) if data.get("audio_figures") else None,
            source_damage=data.get("source_damage", ""),
            quality={name: RungScores.from_dict(scores) for name, scores in data["quality"].items()}
            if data.get("quality") else None,
            quality_figures=StageFigures.from_dict(data["quality_figures"]) if data.get("quality_figures") else None,
            rates=ChunkRates.from_dict(data["rates"]) if data.get("rates") else None,
            rework=ChunkRework.from_dict(data["rework"]) if data.get("rework") else None,
            rework_figures=StageFigures.from_dict(data["rework_figures"]) if data.get("rework_figures") else None,
            rework_started_at=data.get("rework_started_at", 0.0), rework_ended_at=data.get("rework_ended_at", 0.0),
        )


def encoder_options(
    rendition: Rendition, info: SourceInfo, config: PipelineConfig, *, crf: float | None = None, capped: bool = True
) -> dict[str, object]:
    """x264 settings shared by the pipeline, the ladder's analysis and the single-ffmpeg
    benchmark baseline. `crf`: this chunk's rate factor (else the rung's); `capped`: a fitted
    rung's VBV cap (the analysis measures the uncapped curve)."""
    fps = max(info.video.fps, 1.0)
    keyint_cap = 10 * math.ceil(config.gop_s * fps)  # forced keyframes set the real GOP
    options: dict[str, object] = {
        "c:v": config.video_codec,
        "preset": config.preset,
        "profile:v": config.profile,
        "pix_fmt": "yuv420p",
        "forced-idr": 1,
        # stitchable: headers that do not depend on the content, so every chunk's init is the same.
        "x264-params": f"keyint={keyint_cap}:min-keyint=1:scenecut=0:open-gop=0:stitchable=1",
        "fps_mode": "passthrough",
    }
    rate_factor = _crf_value(crf if crf is not None else rendition.crf)
    bitrate = rendition.bitrate_kbps
    if rendition.maxrate_kbps:
        # A fitted rung: capped VBR, so that no segment spikes far above the rung's average.
        options["crf"] = rate_factor
        if capped:
            options.update({"maxrate": f"{rendition.maxrate_kbps}k", "bufsize": f"{rendition.bufsize_kbps}k"})
    elif config.rate_control is RateControl.CRF:
        options["crf"] = rate_factor
    elif config.rate_control is RateControl.CAPPED_CRF:
        options.update({"crf": rate_factor, "maxrate": f"{bitrate}k", "bufsize": f"{2 * bitrate}k"})
    else:
        options.update({"b:v": f"{bitrate}k", "maxrate": f"{bitrate * 3 // 2}k", "bufsize": f"{2 * bitrate}k"})
    if rendition.zones:
        zones = "/".join(f"{first},{last},crf={_crf_value(crf)}" for first, last, crf in rendition.zones)
        options["x264-params"] = f"{options['x264-params']}:zones={zones}"
    if rendition.level_idc:
        options["level"] = f"{rendition.level_idc / 10:g}"
    if config.encoder_threads:
        options["threads"] = config.encoder_threads
    return options


def _crf_value(crf: float) -> int | float:
    """Whole rate factors as integers: the fixed ladder's arguments stay as they were."""
    return int(crf) if float(crf).is_integer() else round(float(crf), 2)


def picture_chain(stream, info: SourceInfo):
    """Deinterlace and turn the picture upright, as a player would show it."""
    if info.video.interlaced:
        stream = stream.filter("bwdif", mode="send_frame")
    rotation = info.video.rotation
    if rotation == 90:
        stream = stream.filter("transpose", "clock")
    elif rotation == 180:
        stream = stream.filter("hflip").filter("vflip")
    elif rotation == 270:
        stream = stream.filter("transpose", "cclock")
    return stream


def scale_chain(stream, rendition: Rendition):
    return (
        stream.filter("scale", rendition.width, rendition.height, flags="bicubic")
        .filter("setsar", sar=rendition.sample_aspect, max=65535)
        .filter("format", "yuv420p")
    )


def _clean_output() -> dict[str, object]:
    """Nothing of the source's metadata (title, comment, chapters) reaches the outputs."""
    return {"map_metadata": -1, "map_chapters": -1, "fflags": "+bitexact", "avoid_negative_ts": "disabled"}


@dataclass(frozen=True)
class AudioRange:
    """The chunk's audio on a grid of AAC frames (samples at the output rate, from the video's 0)."""

    first: int  # first sample kept
    end: int  # first sample of the next chunk
    decode_from: int  # where encoding starts (pre-roll)
    decode_to: int  # where encoding stops (post-roll, so the last kept frames are complete)


def audio_range(chunk: Chunk, info: SourceInfo, rate: int) -> AudioRange:
    def on_grid(seconds: float) -> int:
        return round(seconds * rate / AAC_FRAME) * AAC_FRAME

    first = on_grid(chunk.start_s)
    end = on_grid(chunk.end_s) if chunk.end_s is not None else math.ceil(info.duration_s * rate / AAC_FRAME) * AAC_FRAME
    preroll = round(AUDIO_PREROLL_S * rate / AAC_FRAME) * AAC_FRAME
    return AudioRange(first, end, first - preroll, end + _AUDIO_POSTROLL_FRAMES * AAC_FRAME)


def _grid(start: float, end: float, step: float) -> list[float]:
    times = []
    number = 0
    while start + number * step < end - BOUNDARY_EPSILON_S:
        # Every grid time, the chunk's start too, BOUNDARY_EPSILON_S early, as the chunk's
        # trim: a frame a tick before the start is the chunk's first frame and no second
        # keyframe is forced one frame later.
        times.append(max(start + number * step - BOUNDARY_EPSILON_S, 0.0))
        number += 1
    return times


def keyframe_grid(chunk: Chunk, info: SourceInfo, config: PipelineConfig) -> list[float]:
    """Where the chunk's keyframes are forced: the GOP grid from its start."""
    if chunk.end_s is not None:
        return _grid(chunk.start_s, chunk.end_s, config.gop_s)
    times = _grid(chunk.start_s, info.duration_s + config.gop_s, config.gop_s)
    return [t for i, t in enumerate(times) if i == 0 or info.duration_s - t >= short_tail_s(config)]


def tile_times(chunk: Chunk, info: SourceInfo, interval: float) -> tuple[float, ...]:
    end = chunk.end_s if chunk.end_s is not None else info.duration_s
    first = math.ceil(chunk.start_s / interval - 1e-9)
    times = []
    number = first
    while number * interval < end - BOUNDARY_EPSILON_S:
        times.append(round(number * interval, 6))
        number += 1
    return tuple(times)


def _tile_height(info: SourceInfo, config: PipelineConfig) -> int:
    return max(2, 2 * round(config.thumbnail_width * info.video.display_height / info.video.display_width / 2))


def poster_time(info: SourceInfo) -> float:
    return min(info.duration_s * 0.1, max(info.duration_s - 0.1, 0.0))


@dataclass
class _Outputs:
    scratch: Path
    renditions: tuple[Rendition, ...]
    has_audio: bool
    tiles: tuple[float, ...]
    poster: bool
    look_ahead: bool
    video: dict[str, Path] = field(default_factory=dict)
    quality_times: tuple[float, ...] = ()  # where the quality scorer's reference frames are tapped

    def __post_init__(self) -> None:
        self.video = {r.name: self.scratch / f"video_{r.name}.mp4" for r in self.renditions}

    @property
    def audio(self) -> Path:
        return self.scratch / "audio.mp4"

    @property
    def sprite(self) -> Path:
        return self.scratch / "sprite.jpg"

    @property
    def poster_file(self) -> Path:
        return self.scratch / POSTER

    @property
    def next_frame(self) -> Path:
        return self.scratch / "next.crc"

    @property
    def reference(self) -> Path:
        return self.scratch / "reference.nut"


def encode_args(
    source: Source, chunk: Chunk, renditions: tuple[Rendition, ...], info: SourceInfo, config: PipelineConfig,
    outputs: _Outputs, rates: ChunkRates | None = None,
) -> list[str]:
    video = info.video
    time_base = Fraction(video.time_base)
    enc_time_base = f"{time_base.numerator}:{time_base.denominator}"
    video_input = {**source.input_options(), "noautorotate": None, "threads": config.encoder_threads or 0}
    if chunk.seek_s is not None:
        # seek_timestamp: -ss is a source timestamp (else ffmpeg adds the file's start time).
        video_input.update({"ss": f"{chunk.seek_s:.6f}", "seek_timestamp": 1, "noaccurate_seek": None})
    stream = ff.input(source.url, **video_input)[str(video.stream_index)]
    # From here on, times are on the output timeline: 0 is the source's first decoded frame.
    stream = stream.filter("setpts", f"PTS-{video.origin_s:.6f}/TB")
    if chunk.start_s > 0:
        stream = stream.filter("trim", start=f"{chunk.start_s - BOUNDARY_EPSILON_S:.6f}")
    look = None
    if outputs.look_ahead:
        halves = stream.filter_multi_output("split", 2)
        main, look = halves[0], halves[1]
        stream = main.filter("trim", end=f"{chunk.end_s - BOUNDARY_EPSILON_S:.6f}")
        look = (
            look.filter("trim", start=f"{chunk.end_s - BOUNDARY_EPSILON_S:.6f}")
            .filter("trim", end_frame=1)
            .filter("scale", 16, 16)
        )
    stream = picture_chain(stream, info)
    reference = None
    if outputs.quality_times:
        # The quality scorer's reference: these very frames, sampled, at the display size.
        copies = stream.filter_multi_output("split", 2)
        stream = copies[0]
        reference = reference_chain(copies[1], outputs.quality_times, info)
    branches = stream.filter_multi_output("split", len(renditions)) if len(renditions) > 1 else None
    scaled = {
        r.name: scale_chain(branches[i] if branches is not None else stream, r) for i, r in enumerate(renditions)
    }
    # The thumbnails come from the smallest rung and the poster from the smallest rung at least
    # as wide as it: already scaled, so their branches hold small frames, not the source's.
    tiles_from = renditions[-1].name if outputs.tiles else None
    wide = [r for r in renditions if r.width >= min(config.poster_width, renditions[0].width)]
    poster_from = min(wide, key=lambda r: r.width).name if outputs.poster else None
    taps: dict[str, list] = {}
    for name in {n for n in (tiles_from, poster_from) if n}:
        copies = scaled[name].filter_multi_output("split", 1 + (name == tiles_from) + (name == poster_from))
        scaled[name] = copies[0]
        taps[name] = [copies[i] for i in range(1, 1 + (name == tiles_from) + (name == poster_from))]
    nodes = []
    keyframe_times = ",".join(f"{t:.6f}" for t in keyframe_grid(chunk, info, config))
    for rendition in renditions:
        options = encoder_options(rendition, info, config, crf=rates.crf.get(rendition.name) if rates else None)
        options.update({
            # The first frame at or after each grid time becomes a keyframe (absolute times:
            # an expression's `t` counts from the chunk's first frame, which may be late).
            "force_key_frames": keyframe_times,
            "enc_time_base": enc_time_base, "f": "mp4", "movflags": _FRAGMENT_FLAGS, "use_editlist": 0,
            **_clean_output(),
        })
        if rendition.maxrate_kbps:
            # The muxer writes the VBV cap into the init segment (a `btrt` box), and a rework
            # caps a chunk differently from the others: every chunk's init must be the same.
            options["write_btrt"] = 0
        nodes.append(ff.output(scaled[rendition.name], str(outputs.video[rendition.name]), **options))
    if tiles_from:
        tile_height = _tile_height(info, config)
        columns = sprite_columns(len(outputs.tiles), config.thumbnail_width, tile_height)
        tiles = (
            taps[tiles_from].pop(0)
            # eof_action=pass: the last tile too, where the source gives its last frame no duration.
            .filter("fps", fps=f"1/{config.thumbnail_interval_s:g}", start_time=f"{outputs.tiles[0]:.6f}",
                    round="down", eof_action="pass")
            # JPEG is full range: say so, or the encoder refuses a source tagged as limited range.
            .filter("scale", config.thumbnail_width, tile_height, out_range="full")
            .filter("setsar", 1)
            .filter("tile", f"{columns}x{math.ceil(len(outputs.tiles) / columns)}")
        )
        nodes.append(ff.output(tiles, str(outputs.sprite), frames=1, update=1, **{"q:v": 4, "fps_mode": "passthrough"}))
    if poster_from:
        at = poster_time(info)
        poster = (
            taps[poster_from].pop(0)
            # The frame shown at that time, which may have started before it (a still image
            # for the whole video, a hole in a VFR source): a frame grid whose first point is
            # `at`. (A `trim` from `at` kept no frame where none starts after it: no poster.)
            .filter("fps", fps=f"1/{at:.6f}" if at > 0 else "1", start_time=f"{at:.6f}", round="down",
                    eof_action="pass")
            .filter("trim", end_frame=1)
            .filter("scale", f"min({config.poster_width},iw)", -2, out_range="full")
            .filter("setsar", 1)
        )
        nodes.append(ff.output(poster, str(outputs.poster_file), frames=1, update=1, **{"q:v": 3}))
    if look is not None:
        nodes.append(ff.output(look, str(outputs.next_frame), f="framecrc", fps_mode="passthrough",
                               enc_time_base=enc_time_base))
    if reference is not None:
        nodes.append(ff.output(reference, str(outputs.reference), f="nut", fps_mode="passthrough",
                               **{"c:v": "rawvideo"}))
    return ff.merge_outputs(*nodes).global_args("-copyts", "-loglevel", "level+verbose").get_args()


# How far before the audio it needs a chunk seeks; a container without an index can land
# late (MPEG-TS seeks by the video's timestamps), so a late start is retried from further back.
_AUDIO_SEEK_MARGINS_S = (1.0, 4.0, 15.0, None)


def audio_args(
    source: Source, chunk: Chunk, info: SourceInfo, config: PipelineConfig, dest: Path, check: Path, margin: float | None
) -> list[str]:
    """One process for the chunk's audio (beside the video's): the AAC frames of its range only.

    The source's audio is put on the output timeline, resampled with its gaps filled by
    silence (hard compensation: every sample at its time), trimmed to where encoding starts,
    and from there timestamped by sample count, so the AAC frames fall on the grid exactly.
    `check` receives the first trimmed frame: it must be where encoding was meant to start.
    """
    audio = info.audio
    assert audio is not None
    rate = config.audio_sample_rate
    span = audio_range(chunk, info, rate)
    origin = info.video.origin_s
    start = max(span.decode_from, 0)
    options = source.input_options()
    seek = origin + span.decode_from / rate - margin if margin is not None else None
    from_start = seek is None or seek <= origin + max(audio.start_s, 0.0)
    if not from_start:
        options.update({"ss": f"{seek:.6f}", "seek_timestamp": 1})
    stream = ff.input(source.url, **options)[str(audio.stream_index)].filter("asetpts", f"PTS-{origin:.6f}/TB")
    # From the start, silence also fills in before the audio's first sample.
    resample = {"async": 1, "min_hard_comp": 0.001, **({"first_pts": 0} if from_start else {})}
    stream = stream.filter("aresample", rate, **resample).filter("atrim", start_pts=start)
    branches = stream.filter_multi_output("asplit", 2)
    stream, first = branches[0], branches[1].filter("atrim", end_sample=1)
    if span.decode_from < 0:
        stream = stream.filter("adelay", delays=f"{-span.decode_from}S", all=1)  # pre-roll before 0: silence
    stream = (
        stream.filter("asetpts", f"N+{span.decode_from}")
        .filter("apad")
        .filter("atrim", end_sample=span.decode_to - span.decode_from)
    )
    encoded = ff.output(
        stream,
        str(dest),
        **{
            "c:a": "aac", "b:a": f"{config.audio_bitrate_kbps}k", "ac": config.audio_channels, "ar": rate,
            # Keep only this chunk's AAC frames: the pre-roll and post-roll were context.
            "bsf:a": f"noise=drop='lt(pts\\,{span.first})+gte(pts\\,{span.end})'",
            "f": "mp4", "movflags": "+empty_moov+default_base_moof+frag_discont", "use_editlist": 0,
            "frag_duration": int(config.segment_s * 1_000_000), **_clean_output(),
        },
    )
    checked = ff.output(first, str(check), f="framecrc", **{"c:a": "pcm_s16le"})
    return ff.merge_outputs(encoded, checked).global_args("-copyts", "-loglevel", "level+verbose").get_args()


def _encode_audio(source: Source, chunk: Chunk, info: SourceInfo, config: PipelineConfig, dest: Path):
    """Encode the chunk's audio; check it starts where it should, else seek further back."""
    rate = config.audio_sample_rate
    start = max(audio_range(chunk, info, rate).decode_from, 0)
    check = dest.with_suffix(".crc")
    spent = []
    for margin in _AUDIO_SEEK_MARGINS_S:
        with _tool_errors(f"encoding the audio of {chunk.name}"):
            result = run_ffmpeg(audio_args(source, chunk, info, config, dest, check, margin))
        spent.append(result)
        first = first_framecrc_time(check.read_text()) if check.exists() else None
        if first is not None and round(first * rate) == start:
            return fmp4.read_track(dest), spent
    raise PipelineError(ErrorCode.ENCODE_FAILED, f"the audio of {chunk.name} does not start at its time")


def _run_starts(track: fmp4.Track, times: tuple[float, ...]) -> tuple[float, ...] | None:
    """The first frame at or after each sample time (where the scorer's run starts, as the
    reference tap's trim), in seconds from the chunk's first frame (the rungs agree: checked).
    None where a run has not 3 frames of its own (before the chunk ends, or before the next run:
    a hole in a VFR source): not scored."""
    scale = track.timescale
    shown = sorted(sample.presentation for sample in track.samples)
    found = []
    previous = -RUN_FRAMES
    for t in times:
        after = [i for i, p in enumerate(shown) if p >= (t - BOUNDARY_EPSILON_S) * scale]
        # Runs that would share frames (two sample times in one hole) pair the wrong frames.
        if not after or after[0] + RUN_FRAMES > len(shown) or after[0] < previous + RUN_FRAMES:
            return None
        previous = after[0]
        found.append((shown[after[0]] - shown[0]) / scale)
    return tuple(found)


@contextmanager
def _tool_errors(what: str) -> Iterator[None]:
    try:
        yield
    except FfmpegFailed as failure:
        if failure.crashed:
            raise failure.as_tool_crash(what) from None
        raise PipelineError(ErrorCode.ENCODE_FAILED, f"{what} failed: {failure}") from None


def encode_chunk(
    source: Source,
    chunk: Chunk,
    renditions: tuple[Rendition, ...],
    info: SourceInfo,
    config: PipelineConfig,
    *,
    scratch: Path,
    output: ObjectStore,
    prefix: str = "",
    upload_workers: int = 8,
    rates: ChunkRates | None = None,
    video_only: bool = False,
) -> ChunkResult:
    """Encode `chunk` and write its segments under `prefix` in `output`; return its facts.
    `video_only`: these renditions' segments again (a rework), no audio, thumbnails or poster."""
    started_at = time.time()
    started = time.monotonic()
    scratch.mkdir(parents=True, exist_ok=True)
    tiles = () if video_only else tile_times(chunk, info, config.thumbnail_interval_s)
    end = chunk.end_s if chunk.end_s is not None else info.duration_s
    outputs = _Outputs(
        scratch, renditions, info.has_audio and not video_only, tiles,
        poster=not video_only and chunk.start_s - BOUNDARY_EPSILON_S <= poster_time(info) < end - BOUNDARY_EPSILON_S,
        look_ahead=chunk.end_s is not None,
        quality_times=sample_times(chunk, info, config) if vmaf_binary() else (),
    )
    with ThreadPoolExecutor(max_workers=1) as side:
        # The audio is a small process of its own beside the video's.
        audio_job = side.submit(_encode_audio, source, chunk, info, config, outputs.audio) if outputs.has_audio else None
        with _tool_errors(f"encoding {chunk.name}"):
            result = run_ffmpeg(encode_args(source, chunk, renditions, info, config, outputs, rates))
        audio_track, audio_runs = audio_job.result() if audio_job else (None, [])
    audio_reads = sum((io_stats(r) for r in audio_runs), IoStats())
    reads = audio_reads + io_stats(result)
    damage = source_damage(result.stderr, *(r.stderr for r in audio_runs))
    if _PARTIAL_FILE in damage:
        # The container's index names media past the end of the file: it is cut short.
        raise PipelineError(ErrorCode.CORRUPT_INPUT, f"the file is cut short: its index names media past its end ({damage})")

    uploads: list[tuple[str, bytes]] = []
    video: dict[str, TrackFacts] = {}
    tracks = {name: fmp4.read_track(path) for name, path in outputs.video.items()}
    next_frame = _next_frame(outputs.next_frame, tracks) if outputs.look_ahead else None
    for name, track in tracks.items():
        facts, segments = _segments(track, chunk, config.segment_s, end_frame=next_frame)
        video[name] = facts
        if chunk.index == 0:
            uploads.append((init_key(name), track.init))
        uploads += [(segment_key(name, s.start), data) for s, data in zip(facts.segments, segments)]
    _check_rungs_agree(chunk, video)
    scores, scoring = None, None
    runs = _run_starts(next(iter(tracks.values())), outputs.quality_times) if outputs.quality_times else None
    if runs:
        try:
            scores, scoring = score_chunk(outputs.reference, outputs.video, renditions, info, runs, scratch)
        except PipelineError as error:
            if error.code is not ErrorCode.ENCODE_FAILED:
                raise  # the scorer crashed: the tool's failure, retried like any other
            # The renditions are good; a measurement that cannot be made is left out ("not
            # measured" in the manifest), it does not fail the job.

    audio = None
    if audio_track is not None:
        audio, segments = _segments(audio_track, chunk, None, end_frame=None)
        if chunk.index == 0:
            uploads.append((init_key(AUDIO_NAME), audio_track.init))
        uploads += [(segment_key(AUDIO_NAME, s.start), data) for s, data in zip(audio.segments, segments)]

    sprite = None
    tile_height = columns = 0
    if tiles and outputs.sprite.exists():
        sprite = sprite_key(chunk.index)
        uploads.append((sprite, outputs.sprite.read_bytes()))
        tile_height = _tile_height(info, config)
        columns = sprite_columns(len(tiles), config.thumbnail_width, tile_height)
    poster = None
    if outputs.poster and outputs.poster_file.exists():
        poster = f"{THUMBNAILS_DIR}/{POSTER}"
        uploads.append((poster, outputs.poster_file.read_bytes()))

    with ThreadPoolExecutor(max_workers=upload_workers) as pool:
        list(pool.map(lambda item: output.put_bytes(prefix + item[0], item[1], content_type_for(Path(item[0]))), uploads))
    written = sum(len(data) for _, data in uploads)
    return ChunkResult(
        index=chunk.index,
        start_s=chunk.start_s,
        end_s=chunk.end_s,
        video=video,
        audio=audio,
        thumbnails=Thumbnails(sprite, tiles if sprite else (), config.thumbnail_width, tile_height, columns),
        poster=poster,
        next_frame=next_frame,
        frames_decoded=_frames_decoded(result.stderr),
        preroll_s=chunk.preroll_s,
        figures=StageFigures(
            wall_s=time.monotonic() - started, cpu_s=reads.cpu_s, bytes_read=reads.bytes_read,
            bytes_written=written, requests=reads.requests + len(uploads),
            max_rss_mb=max(result.stats.max_rss_mb, scoring.max_rss_mb if scoring else 0.0),
            objects_written=len(uploads),
        ) + (StageFigures(cpu_s=scoring.cpu_s) if scoring else StageFigures()),
        started_at=started_at,
        ended_at=time.time(),
        audio_figures=StageFigures(
            wall_s=sum(r.stats.wall_s for r in audio_runs), cpu_s=audio_reads.cpu_s,
            bytes_read=audio_reads.bytes_read, bytes_written=audio.bytes if audio else 0,
            requests=audio_reads.requests, max_rss_mb=max((r.stats.max_rss_mb for r in audio_runs), default=0.0),
        ) if audio_runs else None,
        source_damage=damage,
        quality=scores,
        quality_figures=scoring,
        rates=rates,
    )


def _segments(
    track: fmp4.Track, chunk: Chunk, segment_s: float | None, *, end_frame: int | None
) -> tuple[TrackFacts, list[bytes]]:
    """Group the track's fragments into segments: on the segment grid for video, one per fragment for audio."""
    if not track.fragments:
        raise PipelineError(ErrorCode.ENCODE_FAILED, f"{chunk.name} produced no frames")
    scale = track.timescale
    groups: list[list[fmp4.Fragment]] = []
    current_slot = None
    for fragment in track.fragments:
        if segment_s is None:
            slot = len(groups)
        else:
            offset = Fraction(fragment.first_presentation, scale) - Fraction(chunk.start_s).limit_denominator(10**6)
            # Frames up to BOUNDARY_EPSILON_S before a grid time are after it, as in the
            # chunk's trim and its keyframe grid (a 1-frame segment otherwise).
            epsilon = Fraction(BOUNDARY_EPSILON_S).limit_denominator(10**6)
            slot = math.floor((offset + epsilon) / Fraction(segment_s).limit_denominator(10**6))
        if slot != current_slot:
            groups.append([])
            current_slot = slot
        groups[-1].append(fragment)
    facts = []
    payloads = []
    for group in groups:
        samples = [s for fragment in group for s in fragment.samples]
        first = min(samples, key=lambda s: s.presentation)
        payloads.append(b"".join(track.data[f.start : f.end] for f in group))
        facts.append(SegmentFacts(first.presentation, len(samples), len(payloads[-1]), group[0].samples[0].sync))
    last_end = max(s.presentation + s.duration for s in track.samples)
    end = end_frame if end_frame is not None else last_end
    return (
        TrackFacts(scale, track.init_sha256, fmp4.codec_string(track.init), tuple(facts), end),
        payloads,
    )


def _next_frame(crc: Path, tracks: dict[str, fmp4.Track]) -> int | None:
    """The time of the first frame after the chunk, in the video's timescale (None: none came)."""
    seconds = first_framecrc_time(crc.read_text()) if crc.exists() else None
    if seconds is None:
        return None
    return round(seconds * next(iter(tracks.values())).timescale)


def _check_rungs_agree(chunk: Chunk, video: dict[str, TrackFacts]) -> None:
    reference_name, reference = next(iter(video.items()))
    for name, facts in video.items():
        layout = [(s.start, s.frames) for s in facts.segments]
        if layout != [(s.start, s.frames) for s in reference.segments] or facts.timescale != reference.timescale:
            raise PipelineError(
                ErrorCode.OUTPUT_CHECK_FAILED, f"{chunk.name}: {name}'s segments differ from {reference_name}'s"
            )
        if not all(s.keyframe_first for s in facts.segments):
            raise PipelineError(ErrorCode.OUTPUT_CHECK_FAILED, f"{chunk.name}: a {name} segment does not start with a keyframe")


_PARTIAL_FILE = "partial file"
# What ffmpeg's demuxer says when the container itself is damaged (its input's log lines).
_DAMAGE = re.compile(r"^\[in#\d+/[^\]]*\] \[(?:warning|error)\] (.*(?:partial file|Packet corrupt|corrupt input packet).*)$", re.M)


def source_damage(*logs: str) -> str:
    """The first complaint about the source's container in ffmpeg's logs, or ""."""
    for log in logs:
        match = _DAMAGE.search(log)
        if match:
            return match.group(1).strip()[:200]
    return ""


_DECODED = re.compile(r"Input stream #0:\d+ \(video\): \d+ packets read \(\d+ bytes\); (\d+) frames decoded")


def _frames_decoded(stderr: str) -> int:
    match = _DECODED.search(stderr)
    return int(match.group(1)) if match else 0

