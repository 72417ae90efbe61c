"""Split: cut the video stream into one stream-copy piece per chunk, no re-encoding.

A piece starts on a source keyframe at or before its chunk and keeps the source's own
timestamps (`-copyts`, NUT container, no shifting), so the encoder can keep exactly the
frames of its chunk by their source time. Audio is not cut: it is encoded once, whole.
"""

from __future__ import annotations

from pathlib import Path

from vtp.core.plan import Chunk
from vtp.core.probe import SourceInfo
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.tools import SOURCE_PROTOCOLS, ProcessStats, ff, ffprobe_json, run_ffmpeg, source_input_options

PIECE_SUFFIX = ".nut"


# Containers without an index (MPEG-PS and -TS, raw streams) seek by estimate and can land
# on a keyframe after the one asked for; the cut is then retried from further back.
_SEEK_BACKOFF_S = (1.0, 3.0, 10.0, 30.0)


def piece_args(
    source: str, chunk: Chunk, info: SourceInfo, dest: Path, *, seek_s: float | None, protocols: str = SOURCE_PROTOCOLS
) -> list[str]:
    # Absolute seek (not from the container's start time) and timestamps for every packet.
    input_options: dict[str, object] = {**source_input_options(protocols), "fflags": "+genpts", "seek_timestamp": 1}
    if seek_s is not None:
        input_options["ss"] = f"{seek_s:.6f}"
    if chunk.piece_end_s is not None:
        input_options["t"] = f"{chunk.piece_end_s - (seek_s or 0.0):.6f}"
    stream = ff.input(str(source), **input_options)[str(info.video.stream_index)]
    output = ff.output(stream, str(dest), c="copy", f="nut", avoid_negative_ts="disabled")
    return output.global_args("-copyts", "-loglevel", "error").get_args()


def cut_piece(
    source: str | Path, chunk: Chunk, info: SourceInfo, dest: Path, *, protocols: str = SOURCE_PROTOCOLS
) -> ProcessStats:
    """Cut the piece; check it starts at or before its keyframe, else cut again from earlier."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    wanted = chunk.piece_start_s
    seeks: list[float | None] = [wanted]
    if wanted is not None:
        seeks += [wanted - back for back in _SEEK_BACKOFF_S if wanted - back > info.video.start_s] + [None]
    for seek in seeks:
        stats = run_ffmpeg(piece_args(str(source), chunk, info, dest, seek_s=seek, protocols=protocols)).stats
        if wanted is None or _first_timestamp(dest) <= wanted + 1e-3:
            return stats
    raise PipelineError(ErrorCode.CORRUPT_INPUT, f"cannot cut {chunk.name}: seeking in the source fails")


def _first_timestamp(piece: Path) -> float:
    packets = ffprobe_json(
        ["-select_streams", "v:0", "-read_intervals", "%+#8", "-show_entries", "packet=pts_time", str(piece)]
    ).get("packets", [])
    times = [float(p["pts_time"]) for p in packets if p.get("pts_time") not in (None, "N/A")]
    return min(times) if times else float("inf")


def piece_name(chunk: Chunk) -> str:
    return chunk.name + PIECE_SUFFIX
