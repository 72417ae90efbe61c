"""The job report page (report.html) in a real browser: Debian's chromium through Playwright.

A COMPLETE job (the session's `vtp run` of the sample): the page is opened over the test HTTP server; its
player plays every rung with hls.js and then with dash.js (the rung chosen with the page's own buttons, the
decoded picture's height checked against the rung), the timeline has one encode bar per chunk, the cost is a
number, and nothing is logged as an error. A FAILED job: the reason and the stage are shown, there is no
player, and nothing is logged as an error. Full-page screenshots go to test-results/browser/.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from vtp.report.page import render_report, write_report

from .conftest import Job, Site

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PLAYER_READY_TIMEOUT_MS = 20_000  # page load (or a format switch) to a player that has read its manifest
RUNG_TIMEOUT_MS = 20_000  # a rung chosen to its picture on screen, playing
ADVANCE_S = 1.0  # playback must move this far from 0 on each rung


# --------------------------------------------------------------------------------------------------------------
# TEMPORARY: the report data made from the job folder, until vtp.report.data.build_report_data lands (then
# `_data_from_job(folder)` becomes `build_report_data(...)`). Only what the page needs, in the data contract's
# shape (functions/vtp/report/page.py); the timeline and the cost are rough, made up from manifest.json.


def _segments(folder: Path, rendition: dict[str, Any]) -> list[dict[str, Any]]:
    playlist = folder / rendition["hls_playlist"]
    lines = playlist.read_text().splitlines()
    segments, start = [], 0.0
    for index, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
            size = (playlist.parent / lines[index + 1]).stat().st_size
            segments.append({"start_s": start, "duration_s": duration, "bytes": size, "kbps": size * 8 / duration / 1000})
            start += duration
    return segments


def _data_from_job(folder: Path) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    stages, outputs = manifest["stages"], manifest["outputs"]
    split, merge = stages["split"]["wall_s"], stages["merge"]["wall_s"]
    span = stages["encode"]["span_s"]
    bars = [{"stage": "split", "label": "split", "chunk": None, "start_s": 0.0, "end_s": split}]
    bars += [
        {"stage": "encode", "label": f"encode chunk {chunk}", "chunk": chunk, "start_s": split, "end_s": split + span}
        for chunk in range(manifest["chunks"])
    ]
    bars.append({"stage": "merge", "label": "merge", "chunk": None, "start_s": split + span, "end_s": split + span + merge})
    for bar in bars:
        bar.update(wait_s=0.0, cold_start=None, attempt=1, retries=0, worker="localhost:1", critical=True)
    keys = ("name", "width", "height", "codec", "codecs", "target_bitrate_kbps", "measured_bitrate_kbps",
            "peak_bitrate_kbps", "size_bytes", "frames", "duration_s")
    gb_s = stages["encode"]["sum"]["wall_s"] * 3.0
    return {
        "job_id": manifest["job_id"], "status": manifest["status"], "input": manifest["input"],
        "finished_at": manifest["finished_at"], "where": "local", "error": None, "failed_stage": None,
        "source": manifest["source"],
        "player": {"hls": outputs["hls_master"], "dash": outputs["dash_manifest"],
                   "thumbnails": outputs.get("thumbnails_vtt"), "poster": outputs.get("poster")},
        "renditions": [
            {**{key: r[key] for key in keys}, "quality": None, "segments": _segments(folder, r)}
            for r in manifest["renditions"]
        ],
        "audio": manifest["audio"],
        "timeline": {"total_s": stages["total_s"], "critical_path_s": stages["critical_path_s"], "bars": bars},
        "cost": {"where": "local", "currency": "USD", "region": "us-east-1", "price_date": "2026-11-01",
                 "lines": [{"item": "Lambda encoder", "quantity": gb_s, "unit": "GB-s", "unit_price": 0.0000166667,
                            "usd": gb_s * 0.0000166667}],
                 "total_usd": gb_s * 0.0000166667, "mediaconvert_usd": None, "mediaconvert_basis": None,
                 "cpu_s": stages["encode"]["sum"]["cpu_s"] + stages["split"]["cpu_s"] + stages["merge"]["cpu_s"],
                 "note": "rough figures made by the test"},
    }


# END TEMPORARY
# --------------------------------------------------------------------------------------------------------------


def _failed_data() -> dict[str, Any]:
    return {
        "job_id": "broken-0123456789abcdef", "status": "FAILED", "input": "/videos/broken </script> & <b>.mp4",
        "finished_at": "2026-11-30T12:00:00Z", "where": "local",
        "error": {"code": "CORRUPT_INPUT", "message": "the container header cannot be read: moov atom not found"},
        "failed_stage": "split", "source": None, "player": None, "renditions": [], "audio": None,
        "timeline": {"total_s": 0.4, "critical_path_s": 0.4, "bars": [
            {"stage": "split", "label": "split", "chunk": None, "start_s": 0.05, "end_s": 0.4, "wait_s": 0.05,
             "cold_start": True, "attempt": 2, "retries": 1, "worker": "host:123", "critical": True},
        ]},
        "cost": {"where": "local", "currency": "USD", "region": "us-east-1", "price_date": "2026-11-01", "lines": [],
                 "total_usd": 0.0, "mediaconvert_usd": None, "mediaconvert_basis": None, "cpu_s": 0.1, "note": ""},
    }


class PageWatch:
    """A page with its console errors, uncaught exceptions and failed requests collected."""

    def __init__(self, browser: Any, site: Site):
        self.site = site
        self.first_request = len(site.log)
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))

    def all_problems(self) -> list[str]:
        http = [f"HTTP {status} for {path}" for path, status in self.site.errors_since(self.first_request)]
        return self.problems + http

    def close(self) -> None:
        self.context.close()


def _state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.vtpReport.state()")


def _wait(page: Any, condition: str, timeout_ms: int, what: str) -> None:
    """Wait for `condition` (JS, with `r` = window.vtpReport, `v` = the video); fail with the state on timeout."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    script = (
        "() => { const r = window.vtpReport, v = document.getElementById('video');"
        f" return !!(r && (({condition}) || r.errors.some(e => e.fatal))); }}"
    )
    try:
        page.wait_for_function(script, timeout=timeout_ms)
    except PlaywrightTimeout:
        pytest.fail(f"{what}: not within {timeout_ms / 1000:g} s; state: {_state(page)}", pytrace=False)
    fatal = [e for e in _state(page)["errors"] if e["fatal"]]
    assert not fatal, f"{what}: player error(s): {fatal}"


def test_report_page_of_a_complete_job(browser: Any, job: Job, site: Site, results: Path):
    data = _data_from_job(job.folder)
    report = write_report(job.folder, data)
    assert report == job.folder / "report.html"
    watch = PageWatch(browser, site)
    page = watch.page
    played: list[str] = []
    try:
        page.goto(f"{site.url}/job/report.html")
        _wait(page, "r.ready && r.format === 'hls'", PLAYER_READY_TIMEOUT_MS, "hls.js ready")
        page.click("#play")
        _wait(page, "v.currentTime > 0.2 && !v.paused", RUNG_TIMEOUT_MS, "hls auto plays")

        for fmt in ("hls", "dash"):
            if fmt == "dash":
                page.click("button[data-format=dash]")
                _wait(page, "r.ready && r.format === 'dash'", PLAYER_READY_TIMEOUT_MS, "dash.js ready")
            for rendition in job.manifest["renditions"]:
                name, height = rendition["name"], rendition["height"]
                page.click(f"button[data-rung='{name}']")
                page.evaluate("() => { window.vtpReport.seek(0); return window.vtpReport.play(); }")
                _wait(
                    page,
                    f"v.videoHeight === {height} && v.currentTime >= {ADVANCE_S} && !v.paused",
                    RUNG_TIMEOUT_MS,
                    f"{fmt} {name}: playing at {height} lines",
                )
                state = _state(page)
                assert state["rung"] == name and state["format"] == fmt
                assert state["videoWidth"] == rendition["width"], state
                played.append(f"{fmt} {name}")
            # The page says what it shows.
            assert job.manifest["renditions"][-1]["name"] in page.inner_text("#now-playing")
        # Back to Auto and to hls.js: dash.js lets go of the video element, hls.js takes it, it plays on.
        page.click("button[data-rung=auto]")
        page.click("button[data-format=hls]")
        _wait(page, "r.ready && r.format === 'hls'", PLAYER_READY_TIMEOUT_MS, "hls.js ready again")
        page.evaluate("() => { window.vtpReport.seek(0); return window.vtpReport.play(); }")
        _wait(page, f"v.currentTime >= {ADVANCE_S} && !v.paused && v.videoHeight > 0", RUNG_TIMEOUT_MS, "hls auto plays again")
        page.evaluate("() => window.vtpReport.pause()")

        # The timeline: one encode bar per chunk, the split and merge stages.
        assert page.locator("#timeline [data-stage=encode]").count() == job.manifest["chunks"]
        assert page.locator("#timeline [data-stage=split]").count() == 1
        assert page.locator("#timeline [data-stage=merge]").count() == 1
        assert page.locator("#timeline [data-chunk]").count() == len(data["timeline"]["bars"])

        # The cost is a number; a local job shows its CPU-seconds.
        total = page.inner_text("#cost-total")
        assert re.fullmatch(r"\$\d+\.\d+", total), total
        assert abs(float(total[1:]) - data["cost"]["total_usd"]) <= 1e-4 * max(1.0, data["cost"]["total_usd"])
        cpu = page.inner_text("#cost-cpu-s")
        assert abs(float(cpu.replace(",", "")) - data["cost"]["cpu_s"]) < 0.06, cpu

        # The tables and the charts: one row and one chart per rung, the audio row.
        rows = page.locator("#renditions tbody tr")
        assert rows.count() == len(job.manifest["renditions"]) + 1
        assert page.locator("svg.bitrate-chart").count() == len(job.manifest["renditions"])
        for rendition in data["renditions"]:
            bars = page.locator(f"svg.bitrate-chart[data-rung='{rendition['name']}'] .segment-bar")
            assert bars.count() == len(rendition["segments"])

        # Hovering the seek bar shows the thumbnail tile of that time.
        assert _state(page)["thumbnails"], "the thumbnail track was not loaded"
        box = page.locator("#seek").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
        tile = page.locator(".seek-tile")
        assert tile.is_visible()
        assert "sprite_" in tile.evaluate("e => e.style.backgroundImage")

        page.mouse.move(0, 0)
        page.screenshot(path=str(results / "report-local.png"), full_page=True)
        problems = watch.all_problems()
        player_errors = _state(page)["errors"]
    finally:
        watch.close()
    assert played == [f"{fmt} {r['name']}" for fmt in ("hls", "dash") for r in job.manifest["renditions"]]
    assert not problems, "\n".join(problems)
    assert not player_errors, f"player errors: {player_errors}"


def test_report_page_of_a_failed_job(browser: Any, site: Site, results: Path, job: Job):
    data = _failed_data()
    folder = job.folder / "failed-report"  # served by the site under /job/failed-report/
    write_report(folder, data)
    assert not (folder / "player").exists()
    watch = PageWatch(browser, site)
    page = watch.page
    try:
        page.goto(f"{site.url}/job/failed-report/report.html")
        page.wait_for_selector("#failure:not([hidden])")
        assert page.inner_text("#failure-code") == "CORRUPT_INPUT"
        assert "moov atom not found" in page.inner_text("#failure-message")
        assert "split" in page.inner_text("#failure h2")
        assert page.inner_text("#status") == "FAILED"
        assert page.inner_text("#summary code") == data["input"]  # the name shown as text, not as markup
        assert page.locator("video").count() == 0
        assert page.locator("#player-section").is_hidden()
        assert page.locator("#timeline [data-stage=split]").count() == 1
        assert page.evaluate("() => window.vtpReport.state().format") is None
        page.screenshot(path=str(results / "report-failed.png"), full_page=True)
        problems = watch.all_problems()
    finally:
        watch.close()
        shutil.rmtree(folder)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", ["from a file", "without player scripts"])
def test_the_player_area_says_why_it_cannot_play(case: str, browser: Any, job: Job):
    """Opened from file:// (browsers refuse the media) or made without the player scripts: no player starts,
    the player area says why and what to do, and the rest of the page is there."""
    data = _data_from_job(job.folder)
    if case == "from a file":
        report = write_report(job.folder, data)
        expected = "--open"
    else:
        report = job.folder / "report-without-players.html"  # beside the media, as report.html would be
        report.write_text(render_report(data, players=False), encoding="utf-8")
        expected = "were not installed"
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        page.goto(report.as_uri())
        message = page.locator("#player-message")
        message.wait_for(state="visible")
        assert expected in message.inner_text()
        state = _state(page)
        assert state["format"] is None and not state["ready"] and expected in state["message"]
        assert page.locator("#play").is_disabled()
        assert page.locator("button[data-format=dash]").is_disabled()
        assert page.locator("#timeline [data-stage=encode]").count() == job.manifest["chunks"]
        assert re.fullmatch(r"\$\d+\.\d+", page.inner_text("#cost-total"))
        assert not any("hls" in s or "dash" in s for s in page.evaluate("() => [...document.scripts].map(s => s.src)"))
    finally:
        context.close()
        if case == "without player scripts":
            report.unlink()
    assert not problems, "\n".join(problems)
