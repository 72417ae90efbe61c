"""The whole local pipeline on generated clips of every awkward kind, checked end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.checks import check_against_source, load_manifest
from vtp.core.config import LadderMode, PipelineConfig, ladder_from_names
from vtp.core.jobstore import JobStatus
from vtp.local.jobstore import SqliteJobStore
from vtp.local.runner import run_job
from vtp.synth import ClipSpec, generate_clip

# Short chunks and segments so that a few seconds of video make several of each.
SMALL = PipelineConfig(
    ladder=ladder_from_names("480p,360p,240p"), preset="ultrafast", gop_s=1.0, chunk_s=2.0, segment_s=2.0
)

VARIANTS = {
    "mp4_2997": ClipSpec(duration_s=6.0, width=640, height=360, fps="30000/1001"),
    "odd_size": ClipSpec(duration_s=5.0, width=641, height=361, fps="25"),
    "no_audio": ClipSpec(duration_s=5.0, width=480, height=270, audio=False),
    "rotated_90": ClipSpec(duration_s=5.0, width=640, height=360, rotation=90),
    "vfr": ClipSpec(duration_s=5.0, width=480, height=270, vfr=True),
    "webm_vp9": ClipSpec(duration_s=4.0, width=480, height=270, container="webm"),
    "mpeg2_ps": ClipSpec(duration_s=5.0, width=720, height=480, fps="30000/1001", container="mpg"),
    "mpeg_ts": ClipSpec(duration_s=5.0, width=640, height=360, fps="25", container="ts", source_gop_s=1.0),
    "mkv": ClipSpec(duration_s=4.0, width=480, height=270, container="mkv"),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    suffix = {"webm": "webm", "mpg": "mpg", "ts": "ts", "mkv": "mkv"}
    return {
        name: generate_clip(folder / f"{name}.{suffix.get(spec.container, 'mp4')}", spec)
        for name, spec in VARIANTS.items()
    }


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_kind_of_input_makes_a_correct_ladder(variant, clips, tmp_path):
    source = clips[variant]
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    result = run_job(source, tmp_path / "out", config=SMALL, workers=2, store=store)

    assert result.status is JobStatus.COMPLETE, result.error
    manifest = check_against_source(result.folder, source)
    assert manifest["chunks"] >= 2
    top = manifest["renditions"][0]
    if VARIANTS[variant].rotation in (90, 270):
        assert top["height"] > top["width"], "a portrait source gives portrait renditions"
    record = store.get(result.job_id)
    assert record.status is JobStatus.COMPLETE and record.chunks_done == record.chunks_total == manifest["chunks"]
    assert not (tmp_path / "out" / ".work").exists(), "scratch files are cleaned up"
    assert [p.name for p in (tmp_path / "out").iterdir()] == [result.job_id], "nothing but the job folder"
    # Each media segment is written once: the folder holds the ladder's bytes and text.
    media = sum(p.stat().st_size for p in result.folder.rglob("*.m4s"))
    ladder = sum(r["size_bytes"] for r in manifest["renditions"]) + (manifest["audio"] or {}).get("size_bytes", 0)
    assert media == ladder


def test_sample_media_makes_a_correct_four_rung_ladder(tmp_path):
    samples = sorted(Path("sample_media").glob("*.mp4"))
    assert samples, "sample_media/ holds the sample clip"
    source = samples[0]
    # The fixed ladder (the fitted one is checked in test_rework.py, test_quality.py and on LocalStack).
    config = PipelineConfig(preset="ultrafast", ladder_mode=LadderMode.FIXED)
    result = run_job(source, tmp_path / "out", config=config, workers=2)
    assert result.status is JobStatus.COMPLETE, result.error
    manifest = check_against_source(result.folder, source)
    short_side = min(manifest["source"]["width"], manifest["source"]["height"])
    expected = [r.name for r in PipelineConfig().ladder if r.height <= short_side * 1.05]
    assert [r["name"] for r in manifest["renditions"]] == expected


def test_bad_input_fails_with_a_reason_and_publishes_nothing(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    result = run_job(bad, tmp_path / "out", config=SMALL, store=store)

    assert result.status is JobStatus.FAILED
    manifest = load_manifest(result.folder)
    assert manifest["status"] == "FAILED"
    assert manifest["error"]["code"] == "UNSUPPORTED_INPUT"
    assert sorted(p.name for p in result.folder.iterdir()) == ["manifest.json", "report.html"]
    record = store.get(result.job_id)
    assert record.status is JobStatus.FAILED and record.error_code == "UNSUPPORTED_INPUT"


def test_a_failure_mid_encode_leaves_only_a_failed_manifest(clips, tmp_path, monkeypatch):
    from vtp.core import stages
    from vtp.core.errors import ErrorCode, PipelineError

    real = stages.encode_chunk

    def failing_on_second_chunk(source, chunk, *args, **kwargs):
        if chunk.index == 1:
            raise PipelineError(ErrorCode.ENCODE_FAILED, "encoding chunk_00001 failed: injected")
        return real(source, chunk, *args, **kwargs)

    monkeypatch.setattr(stages, "encode_chunk", failing_on_second_chunk)
    result = run_job(clips["no_audio"], tmp_path / "out", config=SMALL, workers=2)
    assert result.status is JobStatus.FAILED
    manifest = load_manifest(result.folder)
    assert manifest["error"]["code"] == "ENCODE_FAILED"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [result.job_id]
    assert sorted(p.name for p in result.folder.iterdir()) == ["manifest.json", "report.html"]
    # The page shows the timeline up to the failure: the split and the chunks that finished.
    bars = manifest["timeline"]["bars"]
    assert bars[0]["stage"] == "split" and all(b["stage"] == "encode" for b in bars[1:])
    assert 1 not in [b["chunk"] for b in bars[1:]], "the failed chunk has no bar"
    assert "ENCODE_FAILED" in (result.folder / "report.html").read_text()
