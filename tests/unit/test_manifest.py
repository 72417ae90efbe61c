"""manifest.json: the typed output contract, written atomically and last."""

from __future__ import annotations

import json
import re

import pytest

from vtp.core import manifest
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import AudioEntry, EncodeFigures, Manifest, RenditionEntry, StageFigures, Stages

SOURCE = {"duration_s": 6.0, "width": 320, "height": 180, "frame_rate": "30/1", "frames": 180, "has_audio": True}


def stages() -> Stages:
    chunk = StageFigures(wall_s=2.5, cpu_s=4.0, bytes_read=1_000_000, bytes_written=300_000, requests=12, max_rss_mb=80)
    encode = EncodeFigures(3, chunk + chunk + chunk, chunk, span_s=4.2)
    audio = EncodeFigures(3, StageFigures(wall_s=0.6, cpu_s=0.3), StageFigures(wall_s=0.2, cpu_s=0.1), span_s=0.2)
    return Stages(
        split=StageFigures(wall_s=0.1234, bytes_read=90_000, requests=5),
        encode=encode,
        merge=StageFigures(wall_s=0.01, bytes_read=5_000, bytes_written=4_000, requests=9),
        total_s=4.5,
        audio=audio,
    )


def complete() -> Manifest:
    return Manifest(
        job_id="clip-0123456789abcdef",
        status="COMPLETE",
        input="clip.mp4",
        finished_at=manifest.now_iso(),
        source=SOURCE,
        renditions=(RenditionEntry("720p", 1280, 720, "h264", "avc1.64001f", 3000, 2450.5, 3900.0, 180, 6.0, 1_837_000, 2,
                                   "720p/playlist.m3u8"),),
        audio=AudioEntry("aac", "mp4a.40.2", 128, 130.1, 2, 48000, 6.0, 97_000, "audio/playlist.m3u8"),
        chunks=3,
        stages=stages(),
        outputs={"hls_master": "master.m3u8"},
        settings={"preset": "veryfast"},
    )


def test_a_complete_manifest_has_the_contract_keys():
    data = complete().to_dict()
    assert data["status"] == "COMPLETE" and data["job_id"] == "clip-0123456789abcdef"
    assert data["source"] == SOURCE and data["chunks"] == 3
    assert data["renditions"][0]["peak_bitrate_kbps"] == 3900.0 and data["renditions"][0]["segments"] == 2
    assert data["schema_version"] == manifest.SCHEMA_VERSION == 2
    assert "error" not in data and "failed_stage" not in data
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["finished_at"])


def test_stages_carry_each_stages_figures_and_the_critical_path():
    data = complete().to_dict()["stages"]
    assert data["split"] == {"wall_s": 0.123, "cpu_s": 0.0, "bytes_read": 90_000, "bytes_written": 0, "requests": 5,
                             "max_rss_mb": 0.0, "objects_written": 0, "memory_mb": 0}
    assert data["encode"]["sum"]["bytes_read"] == 3_000_000 and data["encode"]["max"]["wall_s"] == 2.5
    assert data["encode"]["span_s"] == 4.2
    assert data["critical_path_s"] == round(0.1234 + 4.2 + 0.01, 3)
    assert data["audio"]["in_encoders"] is True and data["audio"]["sum"]["cpu_s"] == 0.3


def test_a_manifest_reads_back_as_what_was_written():
    original = complete()
    again = Manifest.from_dict(json.loads(manifest.manifest_json(original)))
    assert again.to_dict() == original.to_dict()
    assert again.stages.critical_path_s == pytest.approx(original.stages.critical_path_s, abs=1e-3)


def test_a_failed_manifest_names_the_error_and_the_stage():
    error = PipelineError(ErrorCode.NO_VIDEO_STREAM, "the file has no video stream (audio)")
    data = manifest.failed_manifest("song-0123456789abcdef", "song.m4a", error, stage="split").to_dict()
    assert data["status"] == "FAILED" and data["failed_stage"] == "split"
    assert data["error"] == {"code": "NO_VIDEO_STREAM", "message": "the file has no video stream (audio)"}
    assert data["renditions"] == [] and data["chunks"] == 0 and data["source"] is None


def test_a_failed_manifest_keeps_the_source_and_figures_it_has():
    error = PipelineError(ErrorCode.INPUT_TOO_LONG, "too long")
    data = manifest.failed_manifest("x-0123456789abcdef", "x.mp4", error, stage="split", stages=stages(),
                                    source_summary=SOURCE).to_dict()
    assert data["source"] == SOURCE and data["stages"]["split"]["bytes_read"] == 90_000


def test_write_manifest_makes_the_folder_and_writes_json(tmp_path):
    folder = tmp_path / "out" / "job"
    path = manifest.write_manifest(folder, complete())
    assert path == folder / manifest.MANIFEST == folder / "manifest.json"
    assert json.loads(path.read_text()) == complete().to_dict() | {"finished_at": json.loads(path.read_text())["finished_at"]}
    assert [p.name for p in folder.iterdir()] == ["manifest.json"], "no partial file is left behind"


def test_write_manifest_replaces_an_earlier_one_whole(tmp_path):
    manifest.write_manifest(tmp_path, complete())
    error = PipelineError(ErrorCode.ENCODE_FAILED, "boom")
    manifest.write_manifest(tmp_path, manifest.failed_manifest("j", "x.mp4", error, stage="encode"))
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["status"] == "FAILED" and data["outputs"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
