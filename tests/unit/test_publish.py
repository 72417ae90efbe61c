"""Publish: the encoders' facts -> checks, playlists, MPD, thumbnail track, manifest.

The facts come from real encodes of a generated clip; the broken cases are those facts
with one thing changed, as a bad encoder or a lost chunk would leave them.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from vtp.core import encode, publish, stages
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import StageFigures
from vtp.core.source import local_source
from vtp.core.storage import FolderStore


class RecordingStore(FolderStore):
    """A folder store that remembers every call: the publisher must read no media."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def put_bytes(self, key, data, content_type=None):
        self.calls.append(("put", key))
        super().put_bytes(key, data, content_type)

    def get_json(self, key):
        self.calls.append(("get", key))
        return super().get_json(key)

    def download(self, key, path):
        self.calls.append(("download", key))
        return super().download(key, path)


@pytest.fixture(scope="module")
def encoded(clip, small_config, tmp_path_factory):
    source = local_source(clip("irregular"))
    info, plan, split = stages.inspect(source, small_config)
    folder = tmp_path_factory.mktemp("published")
    store = FolderStore(folder)
    results = [
        stages.encode_chunk(source, c, info, plan, small_config, scratch=folder / ".scratch" / c.name, output=store)
        for c in plan.chunks
    ]
    return info, plan, split, results, folder


def run_publish(encoded, small_config, results=None, root=None):
    info, plan, split, default_results, folder = encoded
    store = RecordingStore(root or folder)
    manifest = publish.publish(
        job_id="job", source_name="clip.mp4", info=info, plan=plan, config=small_config,
        results=results if results is not None else default_results, store=store, prefix="", split=split,
        started_at=time.time() - 1,
    )
    return manifest, store


def test_the_publisher_writes_only_text_and_reads_nothing(encoded, small_config):
    manifest, store = run_publish(encoded, small_config)
    assert manifest.status == "COMPLETE"
    assert all(kind == "put" for kind, _ in store.calls)
    assert sorted(key.rsplit(".", 1)[1] for _, key in store.calls) == sorted(
        ["m3u8"] * (len(manifest.renditions) + 2) + ["mpd", "vtt"]
    )
    assert manifest.stages.merge.bytes_read == 0 and manifest.stages.merge.bytes_written > 0


def test_media_playlists_list_every_segment_with_its_duration(encoded, small_config):
    info, plan, split, results, folder = encoded
    manifest, _ = run_publish(encoded, small_config)
    for rendition in manifest.renditions:
        playlist = m3u8.load(str(folder / rendition.hls_playlist))
        facts = [s for r in results for s in r.video[rendition.name].segments]
        assert [s.uri for s in playlist.segments] == [f"segment_{s.start}.m4s" for s in facts]
        assert all((folder / rendition.name / s.uri).is_file() for s in playlist.segments)
        assert sum(s.duration for s in playlist.segments) == pytest.approx(info.duration_s, abs=1e-3)
        assert playlist.target_duration == max(round(s.duration + 0.4999) for s in playlist.segments)
        assert playlist.segment_map[0].uri == "init.mp4" and playlist.is_endlist


def test_the_master_playlist_states_peak_and_average_bandwidth(encoded, small_config):
    info, plan, split, results, folder = encoded
    manifest, _ = run_publish(encoded, small_config)
    master = m3u8.load(str(folder / "master.m3u8"))
    audio = m3u8.load(str(folder / "audio" / "playlist.m3u8"))
    audio_sizes = [(folder / "audio" / s.uri).stat().st_size for s in audio.segments]
    audio_peak = max(8 * size / s.duration for size, s in zip(audio_sizes, audio.segments))
    for variant, rendition in zip(master.playlists, manifest.renditions):
        media = m3u8.load(str(folder / variant.uri))
        sizes = [(folder / rendition.name / s.uri).stat().st_size for s in media.segments]
        peak = max(8 * size / s.duration for size, s in zip(sizes, media.segments))
        assert variant.stream_info.bandwidth == pytest.approx(peak + audio_peak, rel=1e-3)
        average = 8 * (sum(sizes) + sum(audio_sizes)) / info.duration_s
        assert variant.stream_info.average_bandwidth == pytest.approx(average, rel=2e-3)
        assert variant.stream_info.resolution == (rendition.width, rendition.height)
        assert variant.stream_info.frame_rate == pytest.approx(info.video.fps, abs=1e-3)
        assert variant.stream_info.codecs == f"{rendition.codecs},mp4a.40.2"
    assert master.media[0].uri == "audio/playlist.m3u8" and master.media[0].group_id == "audio"


def test_the_mpd_addresses_the_same_files_with_a_segment_timeline(encoded, small_config):
    info, plan, split, results, folder = encoded
    manifest, _ = run_publish(encoded, small_config)
    mpd = MPEGDASHParser.parse(str(folder / "manifest.mpd"))
    video, audio = mpd.periods[0].adaptation_sets
    assert video.frame_rate == "30" and [r.id for r in video.representations] == [r.name for r in plan.renditions]
    template = video.segment_templates[0]
    times = []
    t = 0
    for s in template.segment_timelines[0].Ss:
        t = s.t if s.t is not None else t
        for _ in range((s.r or 0) + 1):
            times.append(t)
            t += s.d
    assert t / template.timescale == pytest.approx(info.duration_s, abs=1e-3)
    for rendition in plan.renditions:
        for start in times:
            name = template.media.replace("$RepresentationID$", rendition.name).replace("$Time$", str(start))
            assert (folder / name).is_file(), name
    assert audio.representations[0].id == "audio"


def test_the_thumbnail_track_points_into_each_chunks_sprite(encoded, small_config):
    info, plan, split, results, folder = encoded
    run_publish(encoded, small_config)
    lines = (folder / "thumbnails" / "thumbnails.vtt").read_text().splitlines()
    cues = [line for line in lines if "#xywh=" in line]
    assert len(cues) == len([t for r in results for t in r.thumbnails.times])
    assert cues[0].startswith("sprite_00000.jpg#xywh=0,0,")
    assert lines[2] == "00:00:00.000 --> 00:00:02.000"


def test_a_missing_chunk_is_refused(encoded, small_config):
    results = encoded[3]
    with pytest.raises(PipelineError) as refused:
        run_publish(encoded, small_config, results=results[:1] + results[2:])
    assert refused.value.code is ErrorCode.OUTPUT_CHECK_FAILED and "missing" in refused.value.message


def test_an_init_segment_that_differs_is_refused(encoded, small_config):
    results = list(encoded[3])
    name = next(iter(results[1].video))
    odd = dataclasses.replace(results[1].video[name], init_sha256="0" * 64)
    results[1] = dataclasses.replace(results[1], video={**results[1].video, name: odd})
    with pytest.raises(PipelineError) as refused:
        run_publish(encoded, small_config, results=results)
    assert refused.value.code is ErrorCode.OUTPUT_CHECK_FAILED and "init" in refused.value.message


def test_lost_frames_between_chunks_are_refused(encoded, small_config):
    results = list(encoded[3])
    results[0] = dataclasses.replace(results[0], next_frame=results[0].next_frame - 1)
    with pytest.raises(PipelineError) as refused:
        run_publish(encoded, small_config, results=results)
    assert "frames would be lost" in refused.value.message


def test_audio_that_does_not_join_is_refused(encoded, small_config):
    results = list(encoded[3])
    audio = dataclasses.replace(results[0].audio, end=results[0].audio.end + 1024)
    results[0] = dataclasses.replace(results[0], audio=audio)
    with pytest.raises(PipelineError) as refused:
        run_publish(encoded, small_config, results=results)
    assert "audio" in refused.value.message


def test_the_manifest_carries_stage_figures_and_the_critical_path(encoded, small_config):
    info, plan, split, results, folder = encoded
    manifest, _ = run_publish(encoded, small_config)
    stages_ = manifest.stages
    assert stages_.split == split and stages_.encode.chunks == len(results)
    assert stages_.encode.sum.bytes_read == sum(r.figures.bytes_read for r in results)
    assert stages_.encode.max.wall_s == max(r.figures.wall_s for r in results)
    assert stages_.critical_path_s == pytest.approx(split.wall_s + stages_.encode.span_s + stages_.merge.wall_s)
    data = manifest.to_dict()
    assert data["stages"]["critical_path_s"] == round(stages_.critical_path_s, 3)
    assert data["source"]["frames"] == sum(s.frames for r in results for s in next(iter(r.video.values())).segments)
    assert isinstance(StageFigures.from_dict(data["stages"]["split"]), StageFigures)
    # The audio's own processes, inside the encoders: measured, and a small part of their cost.
    audio = data["stages"]["audio"]
    assert audio["in_encoders"] and audio["chunks"] == len(results)
    assert 0 < audio["sum"]["cpu_s"] < data["stages"]["encode"]["sum"]["cpu_s"]
    assert audio["sum"]["bytes_written"] == data["audio"]["size_bytes"]


def test_segment_keys_are_deterministic():
    assert encode.segment_key("720p", 49152) == "720p/segment_49152.m4s"
    assert encode.init_key("audio") == "audio/init.mp4"
    assert encode.sprite_key(7) == "thumbnails/sprite_00007.jpg"
