"""manifest.json: the output contract, written atomically and last."""

from __future__ import annotations

import json
import re

import pytest

from vtp.core import manifest
from vtp.core.errors import ErrorCode, PipelineError

SOURCE = {"duration_s": 6.0, "width": 320, "height": 180, "frame_rate": "30/1", "frames": 180, "has_audio": True}
TIMINGS = {"probe_s": 0.12345, "split_s": 0.5, "encode_s": 3.21987, "merge_s": 0.1, "package_s": 0.4, "total_s": 4.4}


def complete() -> dict:
    return manifest.complete_manifest(
        job_id="clip-0123456789abcdef",
        source_name="clip.mp4",
        source_summary=SOURCE,
        renditions=[{"name": "720p"}],
        audio={"codec": "aac"},
        chunk_count=3,
        timings=TIMINGS,
        outputs={"hls_master": "hls/master.m3u8"},
        settings={"preset": "veryfast"},
    )


def test_a_complete_manifest_has_the_contract_keys():
    data = complete()
    assert data["status"] == "COMPLETE"
    assert data["job_id"] == "clip-0123456789abcdef"
    assert data["source"] == SOURCE
    assert data["renditions"] == [{"name": "720p"}]
    assert data["chunks"] == 3
    assert data["schema_version"] == manifest.SCHEMA_VERSION
    assert "error" not in data
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["finished_at"])


def test_timings_have_every_stage_rounded_to_milliseconds():
    timings = complete()["timings"]
    assert tuple(timings) == manifest.TIMING_KEYS == ("probe_s", "split_s", "encode_s", "merge_s", "package_s", "total_s")
    assert timings["probe_s"] == 0.123 and timings["encode_s"] == 3.22


def test_a_failed_manifest_names_the_error_and_fills_missing_timings():
    error = PipelineError(ErrorCode.NO_VIDEO_STREAM, "the file has no video stream (audio)")
    data = manifest.failed_manifest("song-0123456789abcdef", "song.m4a", error, {"probe_s": 0.05})
    assert data["status"] == "FAILED"
    assert data["error"] == {"code": "NO_VIDEO_STREAM", "message": "the file has no video stream (audio)"}
    assert data["renditions"] == [] and data["chunks"] == 0 and data["source"] is None
    assert data["timings"] == {key: (0.05 if key == "probe_s" else 0.0) for key in manifest.TIMING_KEYS}


def test_a_failed_manifest_keeps_the_source_when_it_was_probed():
    error = PipelineError(ErrorCode.INPUT_TOO_LONG, "too long")
    data = manifest.failed_manifest("x-0123456789abcdef", "x.mp4", error, {}, SOURCE)
    assert data["source"] == SOURCE


def test_write_manifest_makes_the_folder_and_writes_json(tmp_path):
    folder = tmp_path / "out" / "job"
    data = complete()
    path = manifest.write_manifest(folder, data)
    assert path == folder / manifest.MANIFEST == folder / "manifest.json"
    assert json.loads(path.read_text()) == data
    assert [p.name for p in folder.iterdir()] == ["manifest.json"], "no partial file is left behind"


def test_write_manifest_replaces_an_earlier_one_whole(tmp_path):
    manifest.write_manifest(tmp_path, complete())
    error = PipelineError(ErrorCode.ENCODE_FAILED, "boom")
    manifest.write_manifest(tmp_path, manifest.failed_manifest("j", "x.mp4", error, {}))
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["status"] == "FAILED" and "outputs" not in data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_write_manifest_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError):
        manifest.write_manifest(tmp_path, {"job_id": "x", "bad": object()})
    assert not (tmp_path / "manifest.json").exists(), "a failed write leaves no manifest"
