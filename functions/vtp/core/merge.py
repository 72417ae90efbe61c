"""Merge: join a rung's chunks with the concat demuxer and stream copy, no re-encode.

Each chunk's entry carries `inpoint 0` (keep the chunk's own offset of its first frame
from the chunk start) and an exact `duration` (the demuxer would otherwise offset the next
chunk by the container duration rounded to milliseconds).
"""

from __future__ import annotations

from pathlib import Path

from vtp.core.plan import Chunk
from vtp.core.probe import SourceInfo
from vtp.core.tools import ProcessStats, ff, run_ffmpeg


def concat_list(chunks: tuple[Chunk, ...], files: list[Path]) -> str:
    lines = ["ffconcat version 1.0"]
    for chunk, path in zip(chunks, files, strict=True):
        lines.append(f"file '{_quoted(path.resolve())}'")
        lines.append("inpoint 0")
        if chunk.end_s is not None:
            lines.append(f"duration {chunk.end_s - chunk.start_s:.6f}")
    return "\n".join(lines) + "\n"


def _quoted(path: Path) -> str:
    return str(path).replace("'", "'\\''")


def merge_rendition(chunks: tuple[Chunk, ...], files: list[Path], dest: Path, info: SourceInfo) -> ProcessStats:
    """Join the chunks; the last frame is shown for the source's last frame time.

    x264's packets carry no durations, so the muxer would give the very last frame a
    single tick (a VFR rendition then ends a frame early). The MP4 muxer takes the track's
    end from the last packet in decode order: `setts` makes the packets of the last half
    second last until the source's end, and only the final one's duration survives.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    listing = dest.with_suffix(".ffconcat")
    listing.write_text(concat_list(chunks, files))
    end = info.duration_s
    last_duration = f"if(gte(DTS*TB\\,{end - 0.5:.6f})\\,({end:.6f}-DTS*TB)/TB\\,DURATION)"
    stream = ff.input(str(listing), f="concat", safe=0, protocol_whitelist="file")
    output = ff.output(
        stream, str(dest), c="copy", movflags="+faststart", **{"bsf:v": f"setts=pts=PTS:dts=DTS:duration={last_duration}"}
    )
    try:
        return run_ffmpeg(output.global_args("-loglevel", "error").get_args()).stats
    finally:
        listing.unlink(missing_ok=True)
