"""Thumbnails: a JPEG poster and sprite sheets with a WebVTT track that covers the video."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from vtp.core import thumbnails
from vtp.core.tools import ffprobe_json, run_ffmpeg

CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)$")


def picture_size(path: Path) -> tuple[int, int]:
    stream = ffprobe_json(["-show_streams", str(path)])["streams"][0]
    return int(stream["width"]), int(stream["height"])


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_vtt(text: str) -> list[tuple[float, float, str, tuple[int, int, int, int]]]:
    lines = text.splitlines()
    assert lines[0] == "WEBVTT"
    cues = []
    for index, line in enumerate(lines):
        found = CUE.match(line)
        if found:
            start, end = seconds(*found.groups()[:4]), seconds(*found.groups()[4:])
            sheet, fragment = lines[index + 1].split("#xywh=")
            cues.append((start, end, sheet, tuple(int(v) for v in fragment.split(","))))
    return cues


def mean_luma(path: Path, x: int, y: int, w: int, h: int) -> float:
    stderr = run_ffmpeg(
        ["-i", str(path), "-vf", f"crop={w}:{h}:{x}:{y},signalstats,metadata=print:key=lavfi.signalstats.YAVG",
         "-f", "null", "-"]
    ).stderr
    return float(re.findall(r"lavfi\.signalstats\.YAVG=([\d.]+)", stderr)[-1])


@pytest.fixture(scope="module")
def top_and_bottom(staged):
    top, bottom = staged.plan.renditions[0], staged.plan.renditions[-1]
    return staged.merged[top.name], top, staged.merged[bottom.name], bottom


def test_the_poster_is_a_jpeg_no_wider_than_the_source(staged, top_and_bottom, tmp_path):
    video, top, *_ = top_and_bottom
    assert staged.config.poster_width > top.width
    poster = tmp_path / "deep" / thumbnails.POSTER
    thumbnails.make_poster(video, staged.info.duration_s, poster, staged.config)
    assert poster.read_bytes()[:3] == b"\xff\xd8\xff"
    assert picture_size(poster) == (top.width, top.height), "never upscaled past the video"


def test_the_poster_has_the_configured_width(staged, top_and_bottom, tmp_path):
    video, top, *_ = top_and_bottom
    config = staged.config.with_changes(poster_width=160)
    poster = tmp_path / thumbnails.POSTER
    thumbnails.make_poster(video, staged.info.duration_s, poster, config)
    width, height = picture_size(poster)
    assert width == 160 and height % 2 == 0
    assert height == pytest.approx(160 * top.height / top.width, abs=2)


def test_a_poster_of_a_very_short_video(staged, top_and_bottom, tmp_path):
    video, *_ = top_and_bottom
    poster = tmp_path / thumbnails.POSTER
    thumbnails.make_poster(video, 0.05, poster, staged.config)
    assert poster.stat().st_size > 0


@pytest.fixture(scope="module")
def sprites(staged, top_and_bottom, tmp_path_factory):
    """Sprites every 0.05 s of a 6 s video: 120 tiles, more than one 10x10 sheet."""
    *_, video, bottom = top_and_bottom
    config = staged.config.with_changes(thumbnail_interval_s=0.05, thumbnail_width=64)
    folder = tmp_path_factory.mktemp("sprites")
    sheets, track, stats = thumbnails.make_sprites(
        video, bottom.width, bottom.height, staged.info.duration_s, folder, config
    )
    return sheets, track, config, folder


def test_sprite_sheets_exist_and_hold_a_10x10_grid(sprites, staged):
    sheets, track, config, folder = sprites
    count = math.ceil(staged.info.duration_s / config.thumbnail_interval_s - 1e-9)
    assert len(sheets) == math.ceil(count / (thumbnails.SHEET_COLUMNS * thumbnails.SHEET_ROWS)) == 2
    assert [s.name for s in sheets] == ["sprite_000.jpg", "sprite_001.jpg"]
    cues = parse_vtt(track.read_text())
    tile_w, tile_h = cues[0][3][2:]
    assert tile_w == config.thumbnail_width and tile_h % 2 == 0
    for sheet in sheets:
        assert sheet.read_bytes()[:3] == b"\xff\xd8\xff"
        assert picture_size(sheet) == (tile_w * thumbnails.SHEET_COLUMNS, tile_h * thumbnails.SHEET_ROWS)


def test_vtt_cues_cover_the_video_end_to_end(sprites, staged):
    _, track, config, _ = sprites
    cues = parse_vtt(track.read_text())
    assert track.name == thumbnails.TRACK
    assert cues[0][0] == 0.0
    for before, after in zip(cues, cues[1:]):
        assert after[0] == pytest.approx(before[1], abs=1e-3), "no gaps, no overlaps"
    for start, end, *_ in cues:
        assert end > start
        assert end - start <= config.thumbnail_interval_s + 1e-3
    assert cues[-1][1] == pytest.approx(staged.info.duration_s, abs=1e-3)


def test_every_cue_points_inside_an_existing_sheet(sprites):
    sheets, track, _, folder = sprites
    sizes = {sheet.name: picture_size(sheet) for sheet in sheets}
    for _, _, sheet, (x, y, w, h) in parse_vtt(track.read_text()):
        assert sheet in sizes, f"{sheet} is not there"
        width, height = sizes[sheet]
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height


def test_the_last_cue_shows_a_picture_not_an_empty_tile(sprites):
    """The tile filter pads a sheet with black: a cue past the frames actually
    sampled would show an empty tile."""
    _, track, _, folder = sprites
    *_, (_, _, sheet, (x, y, w, h)) = parse_vtt(track.read_text())
    assert mean_luma(folder / sheet, x, y, w, h) > 30


def test_default_sprites_one_tile_per_interval(staged, top_and_bottom, tmp_path):
    *_, video, bottom = top_and_bottom
    sheets, track, stats = thumbnails.make_sprites(
        video, bottom.width, bottom.height, staged.info.duration_s, tmp_path, staged.config
    )
    cues = parse_vtt(track.read_text())
    assert len(sheets) == 1 and stats.wall_s > 0
    assert len(cues) == math.ceil(staged.info.duration_s / staged.config.thumbnail_interval_s)
    assert [c[3][:2] for c in cues[:3]] == [(0, 0), (160, 0), (320, 0)]
    tile_w, tile_h = cues[0][3][2:]
    assert picture_size(sheets[0]) == (tile_w * len(cues), tile_h), "a short video's sheet holds just its tiles"
