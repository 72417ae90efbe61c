"""Split: one stream-copy piece per chunk, cut on source keyframes, source timestamps kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from vtp.core import split
from vtp.core.plan import plan_chunks
from vtp.core.probe import probe

# irregular: keyframes at 0, 1.3, 2.1, 3.7 and 5.2 s; mpg: MPEG-PS starting at 0.53 s,
# open GOPs and frames without a pts; vfr: irregular frame timestamps, one keyframe.
SOURCES = ["irregular", "mpg", "vfr"]


@pytest.fixture(scope="module")
def cut(clip, small_config, tmp_path_factory):
    """name -> (source, info, chunks, [piece paths])."""
    done = {}

    def get(name: str):
        if name not in done:
            source = clip(name)
            info = probe(source)
            chunks = plan_chunks(info, small_config)
            folder = tmp_path_factory.mktemp(f"pieces_{name}")
            pieces = []
            for chunk in chunks:
                piece = folder / split.piece_name(chunk)
                split.cut_piece(source, chunk, info, piece)
                pieces.append(piece)
            done[name] = (source, info, chunks, pieces)
        return done[name]

    return get


def test_piece_names_follow_the_chunk_names(fake_source, small_config):
    chunks = plan_chunks(fake_source(duration_s=30.0), small_config)
    assert [split.piece_name(c) for c in chunks[:2]] == ["chunk_00000.nut", "chunk_00001.nut"]


def test_the_irregular_clip_makes_several_pieces_with_real_cuts(cut):
    _, info, chunks, pieces = cut("irregular")
    assert len(chunks) == 3
    assert any(c.piece_start_s is not None for c in chunks), "at least one piece is cut after the start"
    assert all(p.stat().st_size > 0 for p in pieces)


@pytest.mark.parametrize("name", SOURCES)
def test_each_piece_starts_with_a_keyframe(cut, packets, name):
    _, _, chunks, pieces = cut(name)
    for chunk, piece in zip(chunks, pieces):
        first = packets(piece, decode_order=True)[0]
        assert first.key, f"{chunk.name} starts with a non-keyframe at {first.pts}"


@pytest.mark.parametrize("name", SOURCES)
def test_pieces_keep_the_source_timestamps(cut, packets, name):
    source, _, chunks, pieces = cut(name)
    source_times = {round(p.pts, 4) for p in packets(source)}
    source_keys = {round(p.pts, 4) for p in packets(source) if p.key}
    for chunk, piece in zip(chunks, pieces):
        found = packets(piece)
        times = {round(p.pts, 4) for p in found}
        assert times <= source_times, f"{chunk.name} has times the source does not: {sorted(times - source_times)[:5]}"
        first_key = next(p for p in packets(piece, decode_order=True) if p.key)
        assert round(first_key.pts, 4) in source_keys
        if chunk.piece_start_s is not None:
            assert first_key.pts <= chunk.piece_start_s + 1e-3, "the piece starts at or before its keyframe"


@pytest.mark.parametrize("name", SOURCES)
def test_pieces_cover_their_chunk(cut, packets, name):
    """Every source frame of [chunk start, chunk end) is in the chunk's piece."""
    source, info, chunks, pieces = cut(name)
    source_frames = [p.pts for p in packets(source)]
    start = info.video.start_s
    for chunk, piece in zip(chunks, pieces):
        low = start + chunk.start_s - 1e-4
        high = start + chunk.end_s - 1e-4 if chunk.end_s is not None else float("inf")
        wanted = {round(t, 4) for t in source_frames if low <= t < high}
        assert wanted, f"{chunk.name} has frames"
        have = {round(p.pts, 4) for p in packets(piece)}
        missing = sorted(wanted - have)
        assert not missing, f"{chunk.name} lacks {len(missing)} of its {len(wanted)} frames, first {missing[:3]}"


def test_pieces_hold_only_the_video(cut, stream_of):
    source, _, _, pieces = cut("irregular")
    from vtp.core.tools import ffprobe_json

    for piece in pieces:
        streams = ffprobe_json(["-show_streams", str(piece)])["streams"]
        assert [s["codec_type"] for s in streams] == ["video"]
        assert streams[0]["codec_name"] == "h264"
    assert stream_of(source, "a:0")["codec_name"] == "aac", "the source has audio; the pieces do not"


def test_cut_piece_makes_its_folder(clip, small_config, tmp_path):
    source = clip("irregular")
    info = probe(source)
    chunk = plan_chunks(info, small_config)[-1]
    dest = tmp_path / "deep" / "down" / split.piece_name(chunk)
    stats = split.cut_piece(source, chunk, info, dest)
    assert dest.exists() and stats.wall_s > 0
    assert isinstance(dest, Path)
