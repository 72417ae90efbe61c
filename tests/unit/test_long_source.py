"""A feature-length source goes through the same design: three hours, low resolution.

Slow (minutes): marked `slow`, deselected by default; run with `pytest -m slow`. Its
figures are in the README.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.checks import check_against_source
from vtp.core import fmp4
from vtp.core.config import PipelineConfig, ladder_from_names
from vtp.core.jobstore import JobStatus
from vtp.core.tools import run_ffmpeg
from vtp.local.runner import run_job

pytestmark = pytest.mark.slow

HOURS = 3


@pytest.fixture(scope="module")
def long_source(tmp_path_factory):
    """Three hours of 160x90 at 10 fps with stereo audio, a keyframe every 2 s (made in about a minute)."""
    path = tmp_path_factory.mktemp("long") / "three_hours.mp4"
    seconds = HOURS * 3600
    run_ffmpeg([
        "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s=160x90:r=10:d={seconds}",
        "-f", "lavfi", "-i", f"sine=f=440:sample_rate=48000:d={seconds},aformat=channel_layouts=stereo",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "20", "-c:a", "aac", "-b:a", "64k",
        "-movflags", "+faststart", str(path),
    ])
    return path


def test_a_three_hour_source_completes_and_is_correct(long_source, tmp_path):
    config = PipelineConfig(ladder=ladder_from_names("240p"), preset="ultrafast")
    started = time.monotonic()
    result = run_job(long_source, tmp_path / "out", config=config, workers=2)
    wall = time.monotonic() - started
    assert result.status is JobStatus.COMPLETE, result.error
    stages = result.manifest.to_dict()["stages"]
    print(json.dumps({"wall_s": round(wall, 1), "size_bytes": long_source.stat().st_size, "stages": stages}))
    manifest = check_against_source(result.folder, long_source)
    assert manifest["chunks"] == HOURS * 3600 // 12
    assert manifest["source"]["frames"] == HOURS * 3600 * 10
    assert manifest["renditions"][0]["segments"] == HOURS * 3600 // 4
    # The serial stages read no media: the splitter reads the index (moov: for three hours of
    # 10 fps video and 48 kHz AAC, about 620,000 samples, 4 MB) and, for each of the 899 chunk
    # boundaries, one seek's buffer (measured: 46 MB in all, about 47 KB a boundary); the merger
    # reads nothing.
    moov = next(box for box in fmp4.boxes(long_source.read_bytes()) if box.kind == b"moov")
    boundaries = manifest["chunks"] - 1
    assert stages["split"]["bytes_read"] < 2 * moov.size + boundaries * 64_000, (stages["split"], moov.size)
    assert stages["split"]["requests"] <= boundaries + 8
    assert stages["merge"]["bytes_read"] == 0
