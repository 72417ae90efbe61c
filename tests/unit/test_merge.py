"""Merge: a rung's chunks joined by the concat demuxer with stream copy, timestamps exact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vtp.core import merge
from vtp.core.plan import Chunk
from vtp.core.tools import ffprobe_json

CHUNKS = (
    Chunk(0, 0.0, 10.0, None, 13.9),
    Chunk(1, 10.0, 20.0, 8.2, 24.0),
    Chunk(2, 20.0, None, 18.1, None),
)


def test_concat_list_has_inpoint_zero_and_exact_durations(tmp_path):
    files = [tmp_path / f"{c.name}.mp4" for c in CHUNKS]
    text = merge.concat_list(CHUNKS, files)
    assert text.endswith("\n")
    assert text.splitlines() == [
        "ffconcat version 1.0",
        f"file '{files[0].resolve()}'",
        "inpoint 0",
        "duration 10.000000",
        f"file '{files[1].resolve()}'",
        "inpoint 0",
        "duration 10.000000",
        f"file '{files[2].resolve()}'",
        "inpoint 0",
    ]


def test_concat_list_durations_are_not_rounded_to_milliseconds(tmp_path):
    chunks = (Chunk(0, 0.0, 2.002, None, None), Chunk(1, 2.002, None, 1.5, None))
    text = merge.concat_list(chunks, [tmp_path / "a.mp4", tmp_path / "b.mp4"])
    assert "duration 2.002000" in text


def test_concat_list_quotes_a_path_with_a_quote(tmp_path):
    odd = tmp_path / "it's here" / "chunk_00000.mp4"
    text = merge.concat_list(CHUNKS[:1], [odd])
    line = text.splitlines()[1]
    assert line == "file '" + str(odd.resolve()).replace("'", "'\\''") + "'"
    assert "it'\\''s here" in line


def test_concat_list_needs_one_file_per_chunk(tmp_path):
    with pytest.raises(ValueError):
        merge.concat_list(CHUNKS, [tmp_path / "only_one.mp4"])


def video_packets(path: Path) -> list[dict]:
    return ffprobe_json(
        ["-select_streams", "v:0", "-show_entries", "packet=pts_time,size,flags", str(path)]
    )["packets"]


@pytest.mark.parametrize("name", ["irregular", "vfr"])
def test_merged_rungs_have_the_sources_frames_and_timestamps(stage, packets, name):
    staged = stage(name)
    start = staged.info.video.start_s
    source_times = [p.pts - start for p in packets(staged.source)]
    frame_s = 1.0 / staged.info.video.fps
    keyframes = {}
    for rendition in staged.plan.renditions:
        found = packets(staged.merged[rendition.name])
        assert len(found) == staged.info.video.frames == len(source_times)
        times = [p.pts for p in found]
        # each chunk is placed by its exact duration; within a chunk, frames keep their offsets
        assert times == pytest.approx(source_times, abs=1.001e-3)
        end = found[-1].pts + found[-1].duration
        assert end == pytest.approx(staged.info.duration_s, abs=frame_s + 1e-3)
        keyframes[rendition.name] = [round(p.pts, 4) for p in found if p.key]
    assert len({tuple(k) for k in keyframes.values()}) == 1, "the same keyframes in every rung"


@pytest.mark.parametrize("name", ["irregular", "vfr"])
def test_a_merged_rung_lasts_as_long_as_the_source(stage, packets, name):
    """The last frame is shown for a frame's time, not for one tick: otherwise the rung
    (and its last HLS segment) ends a frame early, and the pipeline's own output check
    fails VFR sources whose median frame interval exceeds 1/fps + 1 ms."""
    staged = stage(name)
    frame_s = 1.0 / staged.info.video.fps
    for rendition in staged.plan.renditions:
        last = packets(staged.merged[rendition.name])[-1]
        assert last.duration >= frame_s / 2, f"{rendition.name}: the last frame lasts {last.duration:.6f} s"
        end = last.pts + last.duration
        assert end == pytest.approx(staged.info.duration_s, abs=frame_s / 2)


def test_merging_copies_the_chunks_without_re_encoding(staged):
    """Every coded picture comes through as it was; the concat demuxer only repeats the
    parameter sets (SPS/PPS, a few dozen bytes) in front of each keyframe."""
    for rendition in staged.plan.renditions:
        chunk_packets = [p for f in staged.encoded[rendition.name] for p in video_packets(f)]
        merged_packets = video_packets(staged.merged[rendition.name])
        assert len(merged_packets) == len(chunk_packets)
        for before, after in zip(chunk_packets, merged_packets):
            assert ("K" in before["flags"]) == ("K" in after["flags"])
            grown = int(after["size"]) - int(before["size"])
            if "K" in before["flags"]:
                assert 0 <= grown <= 100
            else:
                assert grown == 0


def test_the_merged_file_is_fast_start_and_the_listing_is_removed(staged):
    for rendition in staged.plan.renditions:
        merged = staged.merged[rendition.name]
        head = merged.read_bytes()[:200_000]
        assert head.find(b"moov") != -1 and head.find(b"moov") < head.find(b"mdat")
        assert not merged.with_suffix(".ffconcat").exists()


def test_merging_chunks_kept_under_a_path_with_a_quote(staged, packets, tmp_path):
    rendition = staged.plan.renditions[-1]
    folder = tmp_path / "it's chunks"
    folder.mkdir()
    files = []
    for original in staged.encoded[rendition.name]:
        files.append(folder / original.name)
        shutil.copy(original, files[-1])
    dest = tmp_path / "joined" / "out.mp4"
    stats = merge.merge_rendition(staged.plan.chunks, files, dest, staged.info)
    assert stats.wall_s > 0
    assert len(packets(dest)) == staged.info.video.frames
