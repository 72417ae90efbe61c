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

from vtp.core.manifest import Manifest
from vtp.report.data import build_report_data, segments_from_folder
from vtp.report.page import render_report, write_report

from .conftest import Job, Site

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PLAYER_READY_TIMEOUT_MS = 20_000  # page load (or a format switch) to a player that has read its manifest
RUNG_TIMEOUT_MS = 20_000  # a rung chosen to its picture on screen, playing
ADVANCE_S = 1.0  # playback must move this far from 0 on each rung


def embedded_data(report: Path) -> dict[str, Any]:
    """The report data a page carries (the JSON in its report-data script element)."""
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', report.read_text(), re.S)
    assert found, f"{report} carries no report data"
    return json.loads(found.group(1))


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
        # A player cancels the requests it no longer needs when the rung or format changes
        # (net::ERR_ABORTED): that is its job, not a failure; anything else is.
        self.page.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED"
                     else self.problems.append(f"request failed: {r.url} {r.failure}"))

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
    """The page `vtp run` published beside the manifest."""
    report = job.folder / "report.html"
    assert job.manifest["outputs"]["report"] == "report.html" and report.is_file()
    data = embedded_data(report)
    # The bit rates the page draws (from the encoders' facts) are those of the published files.
    manifest = Manifest.from_dict(job.manifest)
    again = build_report_data(manifest, segments_from_folder(job.folder, manifest))
    for drawn, published in zip(data["renditions"], again["renditions"], strict=True):
        assert [s["bytes"] for s in drawn["segments"]] == [s["bytes"] for s in published["segments"]]
        assert [s["start_s"] for s in drawn["segments"]] == pytest.approx([s["start_s"] for s in published["segments"]], abs=1e-3)
    check_complete_report(browser, site, "/job/report.html", job.manifest, data, results / "report-local.png")


def check_complete_report(browser: Any, site: Site, path: str, manifest: dict[str, Any], data: dict[str, Any],
                          screenshot: Path) -> None:
    """Every rung plays in both formats, one timeline bar per chunk, the cost is a number, no error."""
    job = Job(Path("."), manifest)
    watch = PageWatch(browser, site)
    page = watch.page
    played: list[str] = []
    try:
        page.goto(f"{site.url}{path}")
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
        if data["cost"]["cpu_s"] is not None:
            cpu = page.inner_text("#cost-cpu-s")
            assert abs(float(cpu.replace(",", "")) - data["cost"]["cpu_s"]) < 0.06, cpu

        # The tables and the charts: one row and one chart per rung, the audio row.
        rows = page.locator("#renditions tbody tr")
        assert rows.count() == len(job.manifest["renditions"]) + 1
        assert page.locator("svg.bitrate-chart").count() == len(job.manifest["renditions"])
        for rendition in data["renditions"]:
            bars = page.locator(f"svg.bitrate-chart[data-rung='{rendition['name']}'] .segment-bar")
            assert bars.count() == len(rendition["segments"])
        # A fitted ladder (the local default): each rung's VMAF target beside its measured VMAF,
        # and the analysis map's and the fit's bars on the timeline; a fixed one has neither.
        fitted = job.manifest["ladder"]["mode"] == "auto"
        for rendition in job.manifest["renditions"]:
            cells = page.locator(f"#renditions tbody tr[data-rendition='{rendition['name']}'] td").all_inner_texts()
            assert (rendition["target_vmaf"] is not None) == fitted
            if fitted:
                assert f"{rendition['target_vmaf']:.0f}" in cells, (rendition["name"], cells)
        analysed = [b for b in job.manifest["timeline"]["bars"] if b["stage"] == "analyse"]
        assert bool(analysed) == fitted and page.locator(".bar.stage-analyse").count() == len(analysed)
        assert page.locator(".bar.stage-fit").count() == (1 if fitted else 0)

        # Hovering the seek bar shows the thumbnail tile of that time.
        assert _state(page)["thumbnails"], "the thumbnail track was not loaded"
        box = page.locator("#seek").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
        tile = page.locator(".seek-tile")
        assert tile.is_visible()
        assert "sprite_" in tile.evaluate("e => e.style.backgroundImage")

        page.mouse.move(0, 0)
        page.screenshot(path=str(screenshot), full_page=True)
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
    data = embedded_data(job.folder / "report.html")
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
