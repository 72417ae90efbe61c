"""Quality measured in the encoders, checked against an independent, unsampled libvmaf run over
the published rung (its segments joined, the source decoded by the scorer itself)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from tests.support.checks import load_manifest
from vtp.core import stages, tools
from vtp.core.config import LadderMode, PipelineConfig, ladder_from_names
from vtp.core.jobstore import JobStatus
from vtp.core.quality import RungScores, rung_quality, sample_times
from vtp.core.source import local_source
from vtp.local.runner import run_job
from vtp.synth import ClipSpec, generate_clip

LADDER = ladder_from_names("360p,240p")
BASE = PipelineConfig(ladder_mode=LadderMode.FIXED, ladder=LADDER, preset="ultrafast", gop_s=1.0, chunk_s=2.0, segment_s=2.0)


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


@pytest.mark.parametrize("mode", [LadderMode.FIXED, LadderMode.AUTO])
def test_scores_agree_with_an_independent_full_libvmaf_run(scorer, clip, tmp_path, mode):
    """One run of 3 frames in every 2 s segment, at a place that varies: each run's middle
    frame has exactly the score the unsampled run gives that frame, motion feature included; the rung's mean is the full run's within 0.5 VMAF (or 3 standard errors of
    sampling, where the clip's frames vary more than that allows). For the fixed ladder and a
    fitted one (capped VBR, a rate factor per chunk)."""
    config = BASE.with_changes(ladder_mode=mode)
    result = run_job(clip, tmp_path / "out", config=config, workers=2)
    info = stages.inspect(local_source(clip), config)[0]
    assert result.status is JobStatus.COMPLETE, result.error
    manifest = load_manifest(result.folder)
    assert "3 consecutive frames at a varying place in every segment (2 s)" in manifest["settings"]["quality_sampling"]
    for rendition in manifest["renditions"]:
        quality = rendition["quality"]
        frames = full_run(scorer, result.folder, rendition["name"], clip, 640, 360, tmp_path)
        assert len(frames) == 150
        sampled, expected = [], []
        places = []
        for chunk in sorted(result.results, key=lambda r: r.index):
            scores = chunk.quality[rendition["name"]]
            (start,) = sample_times(chunk, info, config)  # chunks of one segment: one run each
            first = math.ceil(start * 25 - 1e-6)  # the run's first frame (25 fps from 0)
            places.append(first - round(chunk.start_s * 25))
            sampled += list(scores.vmaf)
            expected.append(frames[first + 1]["vmaf"])
            assert scores.psnr_y[0] == pytest.approx(min(frames[first + 1]["psnr_y"], 60.0), abs=0.01)
            assert scores.ssim[0] == pytest.approx(frames[first + 1]["float_ssim"], abs=1e-4)
        assert len(set(places)) == len(places) and max(places) > 0, "runs at varying places in their segments"
        assert sampled == pytest.approx(expected, abs=0.01)
        assert quality["frames_scored"] == len(sampled) == 3
        vmaf = [f["vmaf"] for f in frames]
        error = statistics.pstdev(vmaf) / math.sqrt(len(sampled))
        assert abs(quality["vmaf_mean"] - statistics.fmean(vmaf)) <= max(0.5, 3 * error)
        assert quality["vmaf_p5"] <= quality["vmaf_mean"]
    means = [r["quality"]["vmaf_mean"] for r in manifest["renditions"]]
    assert len(means) >= 2 and means == sorted(means, reverse=True), "the larger rung scores higher"


def test_long_titles_sample_one_segment_in_several():
    from vtp.core.plan import Chunk
    from vtp.core.quality import sample_times, sampling_stride

    class Video:
        fps = 25.0

    class Info:
        duration_s = 3600.0
        video = Video()

    config = PipelineConfig()  # 4 s segments, 300 runs wanted: 900 segments -> one in 3
    assert sampling_stride(Info(), config) == 3
    chunk = Chunk(index=5, start_s=60.0, end_s=72.0, seek_s=None, preroll_s=0.0)
    (start,) = sample_times(chunk, Info(), config)  # segments 15, 16, 17: only 15 is sampled
    assert 60.0 <= start < 64.0 and start == pytest.approx(60.0 + (15 * 0.6180339887) % 1.0 * 4.0, abs=1e-5)
    assert sampling_stride(Info(), config.with_changes(quality_samples=0)) == 0


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
    quality = rung_quality(chunks, "one segment in 3")
    assert quality["vmaf_mean"] == pytest.approx((90 + 92 + 80) / 3, abs=0.01)
    assert quality["vmaf_worst_chunk"] == 80.0
    assert quality["vmaf_p5"] == pytest.approx(80 + (90 - 80) * 0.1, abs=0.01)  # numpy's linear percentile
    assert quality["frames_scored"] == 3 and quality["sampling"] == "one segment in 3"
    # The mean's standard error: the sample standard deviation (6.43) over the root of 3.
    assert quality["vmaf_error"] == pytest.approx(statistics.stdev([90, 92, 80]) / math.sqrt(3), abs=0.01)
    assert rung_quality([RungScores((70.0,), (30.0,), (0.9,))], "")["vmaf_error"] is None  # one frame: unknown
    assert rung_quality([RungScores((), (), ())], "") is None
