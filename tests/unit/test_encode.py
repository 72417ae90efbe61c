"""Encode: one chunk decoded once and scaled to every rung, keyframes on a shared grid."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vtp.core import encode, split
from vtp.core.config import PipelineConfig, RateControl
from vtp.core.plan import plan_job
from vtp.core.probe import probe


@pytest.fixture(scope="module")
def encoded(clip, small_config, packets, tmp_path_factory):
    """name -> (info, plan, {chunk index: EncodedChunk}) for the chunks the tests look at."""
    done = {}

    def get(name: str, index: int):
        key = (name, index)
        if key not in done:
            source = clip(name)
            info = probe(source)
            plan = plan_job(info, small_config)
            chunk = plan.chunks[index]
            folder = tmp_path_factory.mktemp(f"encode_{name}_{index}")
            piece = folder / split.piece_name(chunk)
            split.cut_piece(source, chunk, info, piece)
            result = encode.encode_chunk(piece, chunk, plan.renditions, info, small_config, folder / "out")
            done[key] = (source, info, plan, chunk, result)
        return done[key]

    return get


# (clip, chunk): a middle chunk cut from an earlier keyframe, the last chunk (open end),
# and a variable-frame-rate chunk.
CASES = [("irregular", 1), ("irregular", 2), ("vfr", 1)]


def chunk_source_times(source_packets, info, chunk) -> list[float]:
    """Source frame times of the chunk, relative to the chunk's start."""
    start = info.video.start_s + chunk.start_s
    end = info.video.start_s + chunk.end_s if chunk.end_s is not None else float("inf")
    return [p.pts - start for p in source_packets if start - 1e-4 <= p.pts < end - 1e-4]


@pytest.mark.parametrize(("name", "index"), CASES)
def test_each_rung_has_exactly_the_chunks_frames(encoded, packets, name, index):
    source, info, plan, chunk, result = encoded(name, index)
    expected = chunk_source_times(packets(source), info, chunk)
    assert len(plan.renditions) == 2 and set(result.outputs) == {r.name for r in plan.renditions}
    assert result.chunk_index == chunk.index
    for rendition in plan.renditions:
        times = [p.pts for p in packets(result.outputs[rendition.name])]
        assert len(times) == len(expected), f"{rendition.name}: {len(times)} frames, the chunk has {len(expected)}"
        # (an MP4 edit list is in milliseconds: a first frame 3.93 ms after the chunk start
        # comes back at 3 ms, so the offset is kept to within a millisecond)
        assert times == pytest.approx(expected, abs=1.001e-3), "frames keep their offset from the chunk start"
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert gaps == pytest.approx([b - a for a, b in zip(expected, expected[1:])], abs=2e-5)


@pytest.mark.parametrize(("name", "index"), CASES)
def test_keyframes_are_on_the_gop_grid_and_the_same_in_every_rung(encoded, packets, small_config, name, index):
    _, _, plan, _, result = encoded(name, index)
    gop = small_config.gop_s
    keyframes_by_rung = {}
    for rendition in plan.renditions:
        found = packets(result.outputs[rendition.name])
        keyframes = [p.pts for p in found if p.key]
        # the first frame at or after each multiple of the GOP, and no other keyframe
        expected = []
        multiple = 0
        while multiple * gop <= found[-1].pts + 1e-9:
            first = next(p.pts for p in found if p.pts >= multiple * gop - 1e-4)
            if first not in expected:
                expected.append(first)
            multiple += 1
        assert keyframes == expected, f"{rendition.name}: keyframes {keyframes}, grid wants {expected}"
        keyframes_by_rung[rendition.name] = keyframes
    first_rung, *others = plan.renditions
    for rendition in others:
        assert keyframes_by_rung[rendition.name] == keyframes_by_rung[first_rung.name]


@pytest.mark.parametrize(("name", "index"), CASES[:1])
def test_outputs_have_the_planned_size_and_aspect(encoded, stream_of, small_config, name, index):
    _, info, plan, _, result = encoded(name, index)
    for rendition in plan.renditions:
        stream = stream_of(result.outputs[rendition.name])
        assert (stream["width"], stream["height"]) == (rendition.width, rendition.height)
        assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
        sar = Fraction(stream.get("sample_aspect_ratio", "1:1").replace(":", "/"))
        assert sar == Fraction(rendition.sample_aspect)
        display = Fraction(rendition.width, rendition.height) * sar
        assert display == Fraction(info.video.display_width, info.video.display_height)
        assert result.outputs[rendition.name].name == "chunk_00001.mp4"
        assert result.outputs[rendition.name].parent.name == rendition.name


def test_the_process_is_measured(encoded):
    *_, result = encoded("irregular", 1)
    assert result.stats.wall_s > 0 and result.stats.cpu_s > 0 and result.stats.max_rss_mb > 0


def test_a_rotated_source_is_encoded_upright(clip, small_config, stream_of, tmp_path):
    source = clip("rot90")
    info = probe(source)
    plan = plan_job(info, small_config)
    chunk = plan.chunks[0]
    piece = tmp_path / split.piece_name(chunk)
    split.cut_piece(source, chunk, info, piece)
    result = encode.encode_chunk(piece, chunk, plan.renditions[:1], info, small_config, tmp_path / "out")
    stream = stream_of(result.outputs[plan.renditions[0].name])
    assert stream["height"] > stream["width"]
    assert not any("rotation" in side for side in stream.get("side_data_list", [])), "no display matrix left"


# --- encoder settings (pure) --------------------------------------------------------------


@pytest.fixture
def top(fake_source):
    info = fake_source(1920, 1080)
    return info, plan_job(info, PipelineConfig()).renditions[0]


def test_crf_settings(top):
    info, rendition = top
    options = encode.encoder_options(rendition, info, PipelineConfig(rate_control=RateControl.CRF))
    assert options["crf"] == rendition.crf
    assert not {"maxrate", "bufsize", "b:v"} & set(options)


def test_capped_crf_settings(top):
    info, rendition = top
    options = encode.encoder_options(rendition, info, PipelineConfig(rate_control=RateControl.CAPPED_CRF))
    assert options["crf"] == rendition.crf
    assert options["maxrate"] == f"{rendition.bitrate_kbps}k"
    assert options["bufsize"] == f"{2 * rendition.bitrate_kbps}k"
    assert "b:v" not in options


def test_bitrate_settings(top):
    info, rendition = top
    options = encode.encoder_options(rendition, info, PipelineConfig(rate_control=RateControl.BITRATE))
    assert "crf" not in options
    assert options["b:v"] == f"{rendition.bitrate_kbps}k"
    maxrate = int(str(options["maxrate"]).rstrip("k"))
    assert maxrate >= rendition.bitrate_kbps
    assert options["bufsize"] == f"{2 * rendition.bitrate_kbps}k"


@pytest.mark.parametrize("mode", list(RateControl))
def test_every_mode_forces_a_closed_gop_on_the_time_grid(top, mode):
    info, rendition = top
    config = PipelineConfig(rate_control=mode, gop_s=2.0, preset="faster", encoder_threads=3)
    options = encode.encoder_options(rendition, info, config)
    assert options["c:v"] == "libx264" and options["preset"] == "faster" and options["pix_fmt"] == "yuv420p"
    assert options["force_key_frames"] == "expr:gte(t,n_forced*2)"
    params = dict(item.split("=") for item in str(options["x264-params"]).split(":"))
    assert params["scenecut"] == "0" and params["open-gop"] == "0"
    assert int(params["keyint"]) >= 2 * 30, "the frame-count limit never cuts a GOP short"
    assert options["threads"] == 3
