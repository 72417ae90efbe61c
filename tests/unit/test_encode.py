"""Encode: one chunk read from the source, decoded once, every rung and the audio as final
CMAF segments, measured with ffprobe and the segments' own boxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vtp.core import encode, fmp4, stages
from vtp.core.config import PipelineConfig, RateControl
from vtp.core.source import local_source
from vtp.core.storage import FolderStore
from vtp.core.tools import ffprobe_json
from tests.support.checks import source_frame_times


@pytest.fixture(scope="module")
def chunks(clip, small_config, tmp_path_factory):
    """`chunks(name)` -> (source, info, plan, results, folder): every chunk of the clip
    encoded one by one with encode_chunk into one output folder."""
    done = {}

    def get(name: str):
        if name not in done:
            source = local_source(clip(name))
            info, plan, _ = stages.inspect(source, small_config)
            folder = tmp_path_factory.mktemp(f"encoded_{name}")
            store = FolderStore(folder)
            results = [
                stages.encode_chunk(source, chunk, info, plan, small_config, scratch=folder / ".scratch" / chunk.name, output=store)
                for chunk in plan.chunks
            ]
            done[name] = (source, info, plan, results, folder)
        return done[name]

    return get


def segment_track(folder: Path, rung: str, keys: list[str]) -> fmp4.Track:
    init = (folder / rung / "init.mp4").read_bytes()
    return fmp4.parse(init + b"".join((folder / key).read_bytes() for key in keys))


@pytest.mark.parametrize("name", ["irregular", "vfr", "mpg", "ts"])
def test_every_source_frame_is_in_exactly_one_chunk_at_its_time(chunks, clip, name):
    source, info, plan, results, folder = chunks(name)
    assert len(results) == len(plan.chunks) >= 2
    expected = source_frame_times(clip(name))
    for rendition in plan.renditions:
        keys = [encode.segment_key(rendition.name, s.start) for r in results for s in r.video[rendition.name].segments]
        track = segment_track(folder, rendition.name, keys)
        times = sorted(s.presentation / track.timescale for s in track.samples)
        assert len(times) == len(expected), rendition.name
        assert max(abs(a - b) for a, b in zip(times, expected)) < 1e-3
    # Each chunk holds the frames of its own range, and says where the next one starts.
    for before, after in zip(results, results[1:]):
        assert before.next_frame == after.first_frame


def test_segments_lie_on_the_grid_and_start_with_keyframes_in_every_rung(chunks, small_config):
    _, info, plan, results, folder = chunks("irregular")
    for result in results:
        layouts = {name: [(s.start, s.frames) for s in facts.segments] for name, facts in result.video.items()}
        assert len({tuple(v) for v in layouts.values()}) == 1, "rungs cut differently"
        scale = next(iter(result.video.values())).timescale
        for start, _ in next(iter(layouts.values())):
            seconds = start / scale
            assert abs(seconds / small_config.segment_s - round(seconds / small_config.segment_s)) < 1e-3
        for name in layouts:
            track = segment_track(folder, name, [encode.segment_key(name, s.start) for s in result.video[name].segments])
            keyframes = [s.presentation / track.timescale for s in track.samples if s.sync]
            # A keyframe on every GOP grid point of the chunk, and nowhere else (a CFR clip).
            end = result.end_s if result.end_s is not None else info.duration_s
            grid = [result.start_s + k * small_config.gop_s for k in range(round((end - result.start_s) / small_config.gop_s + 0.499))]
            assert keyframes == pytest.approx(grid, abs=1e-3), name


def test_every_chunks_init_segment_is_the_same_bytes(chunks, tmp_path, small_config):
    source, info, plan, results, _ = chunks("irregular")
    hashes = {name: {r.video[name].init_sha256 for r in results} for name in results[0].video}
    assert all(len(found) == 1 for found in hashes.values()), hashes
    assert len({r.audio.init_sha256 for r in results}) == 1


def test_the_audio_of_the_chunks_joins_sample_for_sample(chunks, small_config):
    _, info, plan, results, folder = chunks("irregular")
    ends = []
    for result in results:
        span = encode.audio_range(plan.chunks[result.index], info, small_config.audio_sample_rate)
        assert result.audio.segments[0].start == span.first and result.audio.end == span.end
        assert span.first % encode.AAC_FRAME == 0
        ends.append(result.audio.end)
    assert [r.audio.segments[0].start for r in results[1:]] == ends[:-1]
    keys = [encode.segment_key("audio", s.start) for r in results for s in r.audio.segments]
    track = segment_track(folder, "audio", keys)
    assert track.samples[0].presentation == 0
    assert all(b.presentation - a.presentation == 1024 for a, b in zip(track.samples, track.samples[1:]))


def test_chunked_audio_is_as_clean_at_the_joins_as_elsewhere(chunks, small_config, tmp_path, ffmpeg):
    """Decoded, the joined audio against the source: the signal-to-noise ratio around each
    join is no worse than the worst tenth of the windows elsewhere, less 3 dB (a gap, a
    click or a priming frame at a join would cost it tens of dB)."""
    import numpy as np

    source, info, plan, results, folder = chunks("irregular")
    keys = [encode.segment_key("audio", s.start) for r in results for s in r.audio.segments]
    joined = tmp_path / "audio.mp4"
    joined.write_bytes((folder / "audio" / "init.mp4").read_bytes() + b"".join((folder / k).read_bytes() for k in keys))
    decoded, reference = tmp_path / "decoded.raw", tmp_path / "reference.raw"
    ffmpeg("-v", "error", "-i", str(joined), "-f", "s16le", "-ac", "2", "-ar", "48000", str(decoded))
    ffmpeg("-v", "error", "-i", source.url, "-map", "0:a", "-f", "s16le", "-ac", "2", "-ar", "48000", str(reference))
    a = np.frombuffer(decoded.read_bytes(), dtype="<i2").reshape(-1, 2).astype(float)
    b = np.frombuffer(reference.read_bytes(), dtype="<i2").reshape(-1, 2).astype(float)
    n = min(len(a), len(b))

    def snr(at: int) -> float:
        window = slice(at, at + 2048)
        error = np.sum((a[window] - b[window]) ** 2)
        return 10 * np.log10(np.sum(b[window] ** 2) / max(error, 1e-9))

    joins = [r.audio.segments[0].start - 1024 for r in results[1:]]
    elsewhere = [snr(at) for at in range(4096, n - 4096, 4096) if all(abs(at - j) > 8192 for j in joins)]
    assert float(np.median(elsewhere)) > 25
    floor = float(np.percentile(elsewhere, 10)) - 3
    for join in joins:
        assert snr(join) > floor, (join, snr(join), floor)


def test_thumbnails_tile_the_chunk_and_the_poster_is_in_one_chunk(chunks, small_config):
    _, info, plan, results, folder = chunks("irregular")
    times = [t for r in results for t in r.thumbnails.times]
    assert times == [i * small_config.thumbnail_interval_s for i in range(len(times))]
    for result in results:
        sprite = ffprobe_json(["-show_streams", str(folder / result.thumbnails.sprite)])["streams"][0]
        assert sprite["width"] == len(result.thumbnails.times) * result.thumbnails.tile_width
        assert sprite["height"] == result.thumbnails.tile_height
    posters = [r.poster for r in results if r.poster]
    assert posters == ["thumbnails/poster.jpg"] and (folder / posters[0]).stat().st_size > 0


def test_a_rotated_source_comes_out_upright_with_no_display_matrix(chunks):
    _, info, plan, results, folder = chunks("rot90")
    assert info.video.rotation == 270  # a display matrix of 90 degrees anticlockwise
    top = plan.renditions[0]
    assert top.height > top.width  # 320x180 turned a quarter: portrait
    joined = folder / "joined.mp4"
    keys = [encode.segment_key(top.name, s.start) for r in results for s in r.video[top.name].segments]
    joined.write_bytes((folder / top.name / "init.mp4").read_bytes() + b"".join((folder / k).read_bytes() for k in keys))
    stream = ffprobe_json(["-show_streams", "-select_streams", "v:0", str(joined)])["streams"][0]
    assert (stream["width"], stream["height"]) == (top.width, top.height)
    assert not stream.get("side_data_list")


def test_the_sources_title_and_comment_do_not_reach_the_outputs(tmp_path, ffmpeg, small_config):
    source = tmp_path / "tagged.mp4"
    ffmpeg(
        "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=3", "-f", "lavfi", "-i", "sine=d=3",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-metadata", "title=SECRET-TITLE",
        "-metadata", "comment=SECRET-COMMENT", "-metadata:s:a", "handler_name=SECRET-HANDLER", str(source),
    )
    src = local_source(source)
    info, plan, _ = stages.inspect(src, small_config)
    store = FolderStore(tmp_path / "out")
    for chunk in plan.chunks:
        stages.encode_chunk(src, chunk, info, plan, small_config, scratch=tmp_path / "scratch", output=store)
    published = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    for secret in (b"SECRET-TITLE", b"SECRET-COMMENT", b"SECRET-HANDLER"):
        assert secret not in published


def test_the_encoder_reports_what_it_read_wrote_and_spent(chunks):
    source, info, plan, results, folder = chunks("irregular")
    for result in results:
        figures = result.figures
        assert 0 < figures.bytes_read < 3 * source.size_bytes
        written = sum(s.bytes for facts in result.video.values() for s in facts.segments)
        assert figures.bytes_written >= written
        assert figures.cpu_s > 0 and figures.wall_s > 0 and figures.requests >= 2
        assert result.frames_decoded >= sum(s.frames for s in next(iter(result.video.values())).segments)
        assert result.ended_at >= result.started_at


@pytest.fixture(scope="module")
def top(fake_source):
    from vtp.core.plan import plan_ladder

    info = fake_source()
    return plan_ladder(info, PipelineConfig().ladder)[0], info


def test_crf_settings(top):
    rendition, info = top
    options = encode.encoder_options(rendition, info, PipelineConfig(rate_control=RateControl.CRF))
    assert options["crf"] == rendition.crf and "maxrate" not in options


def test_capped_crf_settings(top):
    rendition, info = top
    options = encode.encoder_options(rendition, info, PipelineConfig(rate_control=RateControl.CAPPED_CRF))
    assert options["crf"] == rendition.crf
    assert options["maxrate"] == f"{rendition.bitrate_kbps}k" and options["bufsize"] == f"{2 * rendition.bitrate_kbps}k"


def test_bitrate_settings(top):
    rendition, info = top
    options = encode.encoder_options(rendition, info, PipelineConfig(rate_control=RateControl.BITRATE))
    assert options["b:v"] == f"{rendition.bitrate_kbps}k" and "crf" not in options


@pytest.mark.parametrize("mode", list(RateControl))
def test_every_mode_makes_stitchable_closed_gops_without_scene_cuts(top, mode):
    rendition, info = top
    params = encode.encoder_options(rendition, info, PipelineConfig(rate_control=mode))["x264-params"]
    assert {"scenecut=0", "open-gop=0", "stitchable=1"} <= set(params.split(":"))
