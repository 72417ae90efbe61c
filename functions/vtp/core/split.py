"""Split: cut the video stream into one stream-copy piece per chunk, no re-encoding.

A piece starts on a source keyframe at or before its chunk and keeps the source's own
timestamps (`-copyts`, NUT container, no shifting), so the encoder can keep exactly the
frames of its chunk by their source time. Audio is not cut: it is encoded once, whole.
"""

from __future__ import annotations

from pathlib import Path

from vtp.core.plan import Chunk
from vtp.core.probe import SourceInfo
from vtp.core.tools import SOURCE_PROTOCOLS, ProcessStats, ff, run_ffmpeg

PIECE_SUFFIX = ".nut"


def piece_args(source: str, chunk: Chunk, info: SourceInfo, dest: Path, *, protocols: str = SOURCE_PROTOCOLS) -> list[str]:
    input_options: dict[str, object] = {"protocol_whitelist": protocols}
    if chunk.piece_start_s is not None:
        input_options["ss"] = f"{chunk.piece_start_s:.6f}"
    if chunk.piece_end_s is not None:
        input_options["t"] = f"{chunk.piece_end_s - (chunk.piece_start_s or 0.0):.6f}"
    stream = ff.input(str(source), **input_options)[str(info.video.stream_index)]
    output = ff.output(stream, str(dest), c="copy", f="nut", avoid_negative_ts="disabled")
    return output.global_args("-copyts", "-loglevel", "error").get_args()


def cut_piece(
    source: str | Path, chunk: Chunk, info: SourceInfo, dest: Path, *, protocols: str = SOURCE_PROTOCOLS
) -> ProcessStats:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return run_ffmpeg(piece_args(str(source), chunk, info, dest, protocols=protocols)).stats


def piece_name(chunk: Chunk) -> str:
    return chunk.name + PIECE_SUFFIX
