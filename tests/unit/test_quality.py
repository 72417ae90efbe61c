"""Quality measured in the encoders, checked against an independent, unsampled libvmaf run over
the published rung (its segments joined, the source decoded by the scorer itself)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from tests.support.checks import load_manifest
from vtp.core import tools
from vtp.core.config import PipelineConfig, ladder_from_names
from vtp.core.jobstore import JobStatus
from vtp.core.quality import RungScores, rung_quality
from vtp.local.runner import run_job
from vtp.synth import ClipSpec, generate_clip

LADDER = ladder_from_names("360p,240p")
BASE = PipelineConfig(ladder=LADDER, preset="ultrafast", gop_s=1.0, chunk_s=2.0, segment_s=2.0)


@pytest.fixture(scope="module")
def scorer() -> str:
    binary = tools.vmaf_binary()
    if binary is None:
        pytest.fail("no quality scorer: scripts/setup.sh puts it in .venv/share/vtp/ffmpeg-vmaf", pytrace=False)
    return binary


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """6 s of 640x360 at 25 fps: three chunks."""
    return generate_clip(tmp_path_factory.mktemp("quality") / "clip.mp4", ClipSpec(duration_s=6.0, width=640, height=360, fps="25"))


def full_run(scorer: str, folder: Path, rung: str, source: Path, width: int, height: int, scratch: Path) -> list[dict]:
    """Every frame of the published rung (init + segments, in playlist order) against the source."""
    joined = scratch / f"{rung}.mp4"
    names = [line for line in (folder / rung / "playlist.m3u8").read_text().splitlines() if line and not line.startswith("#")]
    joined.write_bytes((folder / rung / "init.mp4").read_bytes() + b"".join((folder / rung / n).read_bytes() for n in names))
    log = scratch / f"full_{rung}.json"
    graph = (
        f"[0:v]scale={width}:{height}:flags=bicubic,format=yuv420p,setsar=1,settb=1/25,setpts=N[d];"
        f"[1:v]format=yuv420p,setsar=1,settb=1/25,setpts=N[r];"
        f"[d][r]libvmaf=log_fmt=json:log_path={log}:feature='name=psnr|name=float_ssim'"
    )
    tools._run("scorer", scorer, ["-v", "error", "-i", str(joined), "-i", str(source), "-lavfi", graph, "-f", "null", "-"], None)
    return [frame["metrics"] for frame in json.loads(log.read_text())["frames"]]


def test_every_frame_scored_agrees_with_an_independent_full_run(scorer, clip, tmp_path):
    config = BASE.with_changes(quality_min_period=3, quality_samples=10_000)  # a run every 3 frames: all of them
    result = run_job(clip, tmp_path / "out", config=config, workers=2)
    assert result.status is JobStatus.COMPLETE, result.error
    manifest = load_manifest(result.folder)
    assert manifest["settings"]["quality_sampling"].endswith("every frame")
    for rendition in manifest["renditions"]:
        quality = rendition["quality"]
        frames = full_run(scorer, result.folder, rendition["name"], clip, 640, 360, tmp_path)
        assert quality["frames_scored"] == len(frames) == 150
        vmaf = [f["vmaf"] for f in frames]
        assert quality["vmaf_mean"] == pytest.approx(statistics.fmean(vmaf), abs=0.5)
        assert quality["psnr_db"] == pytest.approx(statistics.fmean(min(f["psnr_y"], 60.0) for f in frames), abs=0.1)
        assert quality["ssim"] == pytest.approx(statistics.fmean(f["float_ssim"] for f in frames), abs=0.002)
        assert quality["vmaf_p5"] <= quality["vmaf_mean"]
    top, bottom = (r["quality"]["vmaf_mean"] for r in manifest["renditions"])
    assert top > bottom, "the larger rung scores higher"


def test_sampled_frames_score_exactly_what_the_full_run_gives_them(scorer, clip, tmp_path):
    """One run of 3 frames every 10: each run's middle frame (the chunk's frames 1, 11, 21, ...)
    has the full run's score for that frame, motion feature included."""
    config = BASE.with_changes(quality_min_period=10, quality_max_period=10)
    result = run_job(clip, tmp_path / "out", config=config, workers=2)
    assert result.status is JobStatus.COMPLETE, result.error
    manifest = load_manifest(result.folder)
    assert "every 10 frames" in manifest["settings"]["quality_sampling"]
    for rendition in manifest["renditions"]:
        frames = full_run(scorer, result.folder, rendition["name"], clip, 640, 360, tmp_path)
        sampled, expected = [], []
        for chunk in sorted(result.results, key=lambda r: r.index):
            first = round(chunk.start_s * 25)  # the chunk's first frame (25 fps from 0)
            scores = chunk.quality[rendition["name"]]
            sampled += list(scores.vmaf)
            expected += [frames[first + k * 10 + 1]["vmaf"] for k in range(len(scores.vmaf))]
        assert len(sampled) == 15  # 5 runs in each 50-frame chunk
        assert sampled == pytest.approx(expected, abs=0.01)
        mean = statistics.fmean(f["vmaf"] for f in frames)
        error = statistics.pstdev(f["vmaf"] for f in frames) / math.sqrt(len(sampled))
        assert abs(rendition["quality"]["vmaf_mean"] - mean) <= max(0.5, 3 * error)


def test_without_a_scorer_quality_is_not_measured(clip, tmp_path, monkeypatch):
    monkeypatch.setenv(tools.VMAF_ENV, "none")
    tools.vmaf_binary.cache_clear()
    try:
        result = run_job(clip, tmp_path / "out", config=BASE, workers=2)
    finally:
        monkeypatch.undo()
        tools.vmaf_binary.cache_clear()
    manifest = load_manifest(result.folder)
    assert result.status is JobStatus.COMPLETE
    assert all(r["quality"] is None for r in manifest["renditions"])
    assert manifest["settings"]["quality_sampling"] is None


def test_a_rung_s_figures_over_its_chunks():
    chunks = [RungScores((90.0, 92.0), (40.0, 41.0), (0.98, 0.99)), RungScores((80.0,), (38.0,), (0.97,))]
    quality = rung_quality(chunks, 120)
    assert quality["vmaf_mean"] == pytest.approx((90 + 92 + 80) / 3, abs=0.01)
    assert quality["vmaf_worst_chunk"] == 80.0
    assert quality["vmaf_p5"] == pytest.approx(80 + (90 - 80) * 0.1, abs=0.01)  # numpy's linear percentile
    assert quality["frames_scored"] == 3 and "every 120 frames" in quality["sampling"]
    assert rung_quality([RungScores((), (), ())], 120) is None
