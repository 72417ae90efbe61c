"""Thumbnails: a poster image and sprite sheets with a WebVTT track for scrubbing previews."""

from __future__ import annotations

import math
from pathlib import Path

from vtp.core.config import PipelineConfig
from vtp.core.tools import ProcessStats, ff, run_ffmpeg

THUMBNAILS_DIR = "thumbnails"
POSTER = "poster.jpg"
TRACK = "thumbnails.vtt"
SHEET_COLUMNS = 10
SHEET_ROWS = 10


def make_poster(video: Path, duration_s: float, dest: Path, config: PipelineConfig) -> ProcessStats:
    dest.parent.mkdir(parents=True, exist_ok=True)
    at = min(max(duration_s * 0.1, 0.0), max(duration_s - 0.1, 0.0))
    stream = ff.input(str(video), ss=f"{at:.3f}").filter("scale", f"min({config.poster_width},iw)", -2)
    output = ff.output(stream, str(dest), vframes=1, **{"q:v": 3})
    return run_ffmpeg(output.global_args("-loglevel", "error").get_args()).stats


def make_sprites(
    video: Path, width: int, height: int, duration_s: float, dest_dir: Path, config: PipelineConfig
) -> tuple[list[Path], Path, ProcessStats]:
    """Sprite sheets of up to SHEET_COLUMNS x SHEET_ROWS tiles, one tile per interval, and the VTT track."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    interval = config.thumbnail_interval_s
    tile_width = config.thumbnail_width
    tile_height = max(2, 2 * round(tile_width * height / width / 2))
    count = max(1, math.ceil(duration_s / interval - 1e-9))
    # A short video gets a sheet just big enough for its tiles.
    columns = min(SHEET_COLUMNS, count)
    rows = min(SHEET_ROWS, math.ceil(count / columns))
    per_sheet = columns * rows
    stream = (
        ff.input(str(video))
        .filter("fps", f"1/{interval:g}", start_time=0, round="down")
        .filter("scale", tile_width, tile_height)
        .filter("tile", f"{columns}x{rows}")
    )
    pattern = dest_dir / "sprite_%03d.jpg"
    output = ff.output(stream, str(pattern), start_number=0, **{"q:v": 4, "fps_mode": "passthrough"})
    stats = run_ffmpeg(output.global_args("-loglevel", "error").get_args()).stats
    sheets = sorted(dest_dir.glob("sprite_*.jpg"))

    cues = ["WEBVTT", ""]
    for index in range(count):
        start = index * interval
        end = min((index + 1) * interval, duration_s)
        sheet, position = divmod(index, per_sheet)
        row, column = divmod(position, columns)
        cues.append(f"{_timestamp(start)} --> {_timestamp(end)}")
        cues.append(f"sprite_{sheet:03d}.jpg#xywh={column * tile_width},{row * tile_height},{tile_width},{tile_height}")
        cues.append("")
    track = dest_dir / TRACK
    track.write_text("\n".join(cues))
    return sheets, track, stats


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"
