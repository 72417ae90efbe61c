"""vtp.ladder_bench: the BD-rate against hand-computable cases, the choice of VMAF subsampling,
and `vtp bench --ladder compare` end to end on a tiny generated clip."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from tests.support.commands import vtp_command
from vtp.core.tools import vmaf_binary
from vtp.ladder_bench import bd_rate, choose_subsample, print_report, rd_frontier
from vtp.synth import ClipSpec, generate_clip

CURVE = [(500.0, 60.0), (1000.0, 75.0), (2000.0, 86.0), (4000.0, 93.0), (8000.0, 97.0)]


@pytest.mark.parametrize("factor", [0.8, 1.0, 1.25, 2.0])
def test_bd_rate_of_a_constant_rate_factor_is_that_factor(factor: float) -> None:
    # Every point of the test curve costs `factor` times the anchor's at the same quality: the
    # fits of log(rate) differ by exactly log(factor), whatever their degree.
    test = [(rate * factor, quality) for rate, quality in CURVE]
    assert bd_rate(CURVE, test) == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert bd_rate(test, CURVE) == pytest.approx((1 / factor - 1) * 100, abs=1e-9)


def test_bd_rate_by_hand_on_straight_lines() -> None:
    # Two points each: straight lines in (quality, ln rate). Anchor: ln r = q / 10, through
    # (e^5, 50) and (e^9, 90); test: ln r = q / 10 + (q - 70) / 100 through (e^4.8, 50) and
    # (e^9.2, 90). Over 50..90 the difference (q - 70) / 100 averages 0: BD-rate 0. Over the
    # overlap 70..90 only (anchor from 70), it averages 0.1: exp(0.1) - 1.
    anchor = [(math.exp(5.0), 50.0), (math.exp(9.0), 90.0)]
    test = [(math.exp(4.8), 50.0), (math.exp(9.2), 90.0)]
    assert bd_rate(anchor, test) == pytest.approx(0.0, abs=1e-9)
    anchor_from_70 = [(math.exp(7.0), 70.0), (math.exp(9.0), 90.0)]
    assert bd_rate(anchor_from_70, test) == pytest.approx(math.expm1(0.1) * 100, abs=1e-9)


def test_bd_rate_is_undefined_without_two_points_or_overlap() -> None:
    assert bd_rate(CURVE, [(1000.0, 80.0)]) is None
    assert bd_rate([(100.0, 10.0), (200.0, 20.0)], [(300.0, 30.0), (400.0, 40.0)]) is None
    # A rung that costs more without more quality is off the frontier, so one point is left.
    assert bd_rate(CURVE, [(1000.0, 80.0), (2000.0, 79.0)]) is None


def test_frontier_drops_dominated_rungs() -> None:
    points = [(4000.0, 95.0), (1000.0, 80.0), (2000.0, 78.0), (3000.0, 95.0), (500.0, 60.0)]
    assert rd_frontier(points) == [(500.0, 60.0), (1000.0, 80.0), (3000.0, 95.0)]


def test_subsampling_is_odd_and_within_budget() -> None:
    assert choose_subsample(frames=393, rungs=6, width=1280, height=720) == 1  # the 16 s sample
    assert choose_subsample(frames=1800, rungs=8, width=1920, height=1080) == 9  # 60 s of 1080p30
    for frames in (1000, 5000, 20000, 100000):
        n = choose_subsample(frames=frames, rungs=9, width=1920, height=1080, budget_mp=5000)
        assert n == 1 or (n % 2 == 1 and frames * 9 * 1920 * 1080 / 1e6 / n <= 5000 < frames * 9 * 1920 * 1080 / 1e6 / (n - 2))


@pytest.mark.skipif(vmaf_binary() is None, reason="no quality scorer (ffmpeg-vmaf)")
def test_bench_ladder_compare_end_to_end(tmp_path: Path) -> None:
    """Both ladders run and every rung is measured. 854x480 is the smallest size at which both
    ladders have two rungs (480p and 360p), so that a BD-rate can be defined."""
    clip = generate_clip(tmp_path / "clip.mp4", ClipSpec(duration_s=2.0, width=854, height=480, audio=False))
    result = subprocess.run(
        [*vtp_command(), "bench", str(clip), "--ladder", "compare", "--json", "--workers", "2",
         "--preset", "ultrafast", "--vmaf-subsample", "3"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "VTP_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["scoring"]["n_subsample"] == 3
    assert report["scoring"]["frames"] == 60
    assert "every 3rd frame" in report["scoring"]["note"]
    for mode in ("fixed", "auto"):
        ladder = report["ladders"][mode]
        assert ladder["rungs"], mode
        assert ladder["total_bytes"] == sum(r["size_bytes"] for r in ladder["rungs"]) > 0
        assert ladder["encode_cpu_s"] > 0
        for rung in ladder["rungs"]:
            assert rung["size_bytes"] > 0 and rung["kbps"] > 0
            assert rung["peak_kbps"] >= rung["kbps"] * 0.999
            assert 0 <= rung["vmaf_p5"] <= rung["vmaf_mean"] <= 100
            assert 15 < rung["psnr_y_db"] <= 60
            assert rung["frames_scored"] == 20  # frames 0, 3, ... 57
    fixed, auto = report["ladders"]["fixed"], report["ladders"]["auto"]
    assert [(r["name"], r["width"], r["height"]) for r in fixed["rungs"]] == [("480p", 854, 480), ("360p", 640, 360)]
    assert all(r["target_vmaf"] is None for r in fixed["rungs"])
    assert all(r["target_vmaf"] is not None for r in auto["rungs"])
    # The top rungs differ in quality in the expected direction of their rates, roughly.
    assert fixed["rungs"][0]["vmaf_mean"] > fixed["rungs"][1]["vmaf_mean"]
    assert report["total_bytes_ratio"] == pytest.approx(auto["total_bytes"] / fixed["total_bytes"], abs=1e-3)
    cpu = report["cpu"]
    assert cpu["analysis_cpu_s"] > 0 and 0 < cpu["analysis_share"] < 10
    assert 0 < cpu["encode_cpu_without_quality_s"] < cpu["encode_cpu_s"]
    assert [(p["rank"], p["fixed"]) for p in report["pairs"]] == [(1, "480p"), (2, "360p")]
    for pair in report["pairs"]:
        if pair["auto"] is not None:
            match = auto["rungs"][pair["rank"] - 1]
            assert (pair["auto"], pair["auto_vmaf"]) == (match["name"], match["vmaf_mean"])
            assert pair["bytes_ratio"] == pytest.approx(match["size_bytes"] / pair["fixed_bytes"], abs=1e-3)
        within = [r for r in auto["rungs"] if r["kbps"] <= pair["fixed_kbps"]]
        assert pair["auto_within_rate_vmaf"] == (max(r["vmaf_mean"] for r in within) if within else None)
    # The BD-rate: defined where both ladders have two rungs that gain quality over a common
    # VMAF range (the fitted ladder's rungs are still being tuned), and then what bd_rate gives.
    points = {mode: [(r["kbps"], r["vmaf_mean"]) for r in report["ladders"][mode]["rungs"]] for mode in ("fixed", "auto")}
    expected = bd_rate(points["fixed"], points["auto"])
    if expected is None:
        assert report["bd_rate_vmaf_pct"] is None and report["bd_rate_note"].startswith("not defined")
    else:
        assert math.isfinite(report["bd_rate_vmaf_pct"])
        assert report["bd_rate_vmaf_pct"] == pytest.approx(expected, abs=0.01)
    assert len(rd_frontier(points["fixed"])) == 2  # the fixed side at least is a curve

    # The same figures as tables (what `vtp bench --ladder compare` prints without --json).
    console = Console(width=200, record=True, file=io.StringIO())
    print_report(report, console)
    text = console.export_text()
    for expected_text in ("fixed ladder", "fitted ladder (auto)", "VMAF p5", "peak/avg", "target VMAF",
                          "total bytes auto / fixed", "BD-rate (VMAF) of auto against fixed", "analysis CPU",
                          "without the encoders' quality scoring", "rework CPU", "every 3rd frame", "854x480", "640x360",
                          "same rank"):
        assert expected_text in text, expected_text

    # The refusals:
    wrong = subprocess.run([*vtp_command(), "bench", str(clip), "--ladder", "compare", "--repeat", "2"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and "INVALID_CONFIG" in wrong.stderr
