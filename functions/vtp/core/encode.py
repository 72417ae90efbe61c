"""Encode one chunk: decode its piece once, scale it to every rung in the same process.

Keyframes are forced on a fixed time grid shared by all rungs (closed GOPs, no scene-cut
keyframes), so renditions switch cleanly and package into aligned segments. The chunk's
frames keep their offset from the chunk start exactly (`-enc_time_base` = source time base)
so that the merged rungs have the source's timestamps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vtp.core.config import PipelineConfig, RateControl
from vtp.core.plan import BOUNDARY_EPSILON_S, Chunk, Rendition
from vtp.core.probe import SourceInfo
from vtp.core.tools import ProcessStats, ff, run_ffmpeg

CHUNK_SUFFIX = ".mp4"


@dataclass(frozen=True)
class EncodedChunk:
    chunk_index: int
    outputs: dict[str, Path]  # rendition name -> file
    stats: ProcessStats


def encoder_options(rendition: Rendition, info: SourceInfo, config: PipelineConfig) -> dict[str, object]:
    """x264 settings shared by the pipeline and the single-ffmpeg benchmark baseline."""
    fps = max(info.video.fps, 1.0)
    keyint_cap = 10 * math.ceil(config.gop_s * fps)  # forced keyframes set the real GOP
    options: dict[str, object] = {
        "c:v": config.video_codec,
        "preset": config.preset,
        "profile:v": config.profile,
        "pix_fmt": "yuv420p",
        "force_key_frames": f"expr:gte(t,n_forced*{config.gop_s:g})",
        "forced-idr": 1,
        "x264-params": f"keyint={keyint_cap}:min-keyint=1:scenecut=0:open-gop=0",
        "fps_mode": "passthrough",
    }
    bitrate = rendition.bitrate_kbps
    if config.rate_control is RateControl.CRF:
        options["crf"] = rendition.crf
    elif config.rate_control is RateControl.CAPPED_CRF:
        options.update({"crf": rendition.crf, "maxrate": f"{bitrate}k", "bufsize": f"{2 * bitrate}k"})
    else:
        options.update({"b:v": f"{bitrate}k", "maxrate": f"{bitrate * 3 // 2}k", "bufsize": f"{2 * bitrate}k"})
    if config.encoder_threads:
        options["threads"] = config.encoder_threads
    return options


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


def encode_args(
    piece: Path,
    chunk: Chunk,
    renditions: tuple[Rendition, ...],
    info: SourceInfo,
    config: PipelineConfig,
    outputs: dict[str, Path],
) -> list[str]:
    video = info.video
    chunk_start = video.start_s + chunk.start_s
    trim = {"start": f"{chunk_start - BOUNDARY_EPSILON_S:.6f}"}
    if chunk.end_s is not None:
        trim["end"] = f"{video.start_s + chunk.end_s - BOUNDARY_EPSILON_S:.6f}"
    decoder_threads = config.encoder_threads or 0
    stream = ff.input(str(piece), noautorotate=None, threads=decoder_threads)["v:0"]
    stream = stream.filter("trim", **trim).filter("setpts", f"PTS-{chunk_start:.6f}/TB")
    stream = picture_chain(stream, info)
    branches = stream.filter_multi_output("split", len(renditions)) if len(renditions) > 1 else None
    time_base = Fraction(video.time_base)
    nodes = []
    for position, rendition in enumerate(renditions):
        branch = branches[position] if branches is not None else stream
        options = encoder_options(rendition, info, config)
        options["enc_time_base"] = f"{time_base.numerator}:{time_base.denominator}"
        options["avoid_negative_ts"] = "disabled"
        nodes.append(ff.output(scale_chain(branch, rendition), str(outputs[rendition.name]), **options))
    return ff.merge_outputs(*nodes).global_args("-copyts", "-loglevel", "error").get_args()


def encode_chunk(
    piece: Path,
    chunk: Chunk,
    renditions: tuple[Rendition, ...],
    info: SourceInfo,
    config: PipelineConfig,
    out_dir: Path,
) -> EncodedChunk:
    """Write `out_dir/<rendition>/<chunk>.mp4` for every rendition."""
    outputs = {r.name: out_dir / r.name / f"{chunk.name}{CHUNK_SUFFIX}" for r in renditions}
    for path in outputs.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    result = run_ffmpeg(encode_args(piece, chunk, renditions, info, config, outputs))
    return EncodedChunk(chunk.index, outputs, result.stats)
