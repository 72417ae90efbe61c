"""A vtp job played by real players in a real browser: hls.js and dash.js in Debian's chromium.

For each player and each rung of the job (ABR off, that rung only): the video starts at presentation time 0
(no gap for the player to jump over), plays, then after a seek to 2 s before the end plays to the `ended`
event; no player error, fatal or not; no console error; no failed request; the decoded picture is the
rung's size and no frame is corrupted. A screenshot and what the player reported are kept in
test-results/browser/ for a person to look at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Job, Site

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

PLAYERS = {
    "hls": "/job/master.m3u8",
    "dash": "/job/manifest.mpd",
}

START_TOLERANCE_S = 0.05  # the first buffered time and the first played time must be this close to 0
DURATION_TOLERANCE_S = 0.1  # the player's duration vs manifest.json's
SEEK_BEFORE_END_S = 2.0
START_TIMEOUT_MS = 20_000  # page load to the first `playing`
PLAY_TIMEOUT_MS = 10_000  # the first second of playback
END_TIMEOUT_MS = 30_000  # the seek to `ended`

# Non-fatal player errors that are allowed. None: every non-fatal error hls.js reports for this output is a
# real problem (e.g. `bufferSeekOverHole` at the start means a timestamp offset, `bufferStalledError` a stall
# at a segment boundary, `bufferNudgeOnStall` a hole in the buffer).
HARMLESS_ERRORS: frozenset[str] = frozenset()

# dash.js log lines (warning level and above) that point at a defect of the stream rather than at the player.
DASH_WARNING_WORDS = ("gap", "stall", "jump", "error", "fail", "discontinu", "overlap")


def is_problem_warning(message: str) -> bool:
    lower = message.lower()
    return any(word in lower for word in DASH_WARNING_WORDS)


def play_rung(browser: Any, site: Site, player: str, rendition: dict[str, Any], results: Path) -> list[str]:
    """Play one rung; return what went wrong, one line each (empty when all is well)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    name = rendition["name"]
    label = f"{player} {name}"
    problems: list[str] = []
    console: list[str] = []
    first_request = len(site.log)
    context = browser.new_context(viewport={"width": 980, "height": 620})
    try:
        page = context.new_page()
        page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: console.append(f"uncaught: {error}"))
        page.goto(f"{site.url}/player/player.html?player={player}&src={PLAYERS[player]}&rung={name}")

        def wait(condition: str, timeout_ms: int, what: str) -> bool:
            try:
                page.wait_for_function(
                    f"() => window.vtp && (({condition}) || window.vtp.errors.some(e => e.fatal))",
                    timeout=timeout_ms,
                )
            except PlaywrightTimeout:
                state = page.evaluate("() => window.vtpSnapshot ? window.vtpSnapshot() : null")
                problems.append(f"{label}: {what} did not happen within {timeout_ms / 1000:g} s (state: {state})")
                return False
            return not any(error["fatal"] for error in page.evaluate("() => window.vtp.errors"))

        if wait("window.vtp.playing", START_TIMEOUT_MS, "`playing`"):
            start = page.evaluate("() => window.vtp.start")
            buffered, current = start["buffered"], start["currentTime"]
            if not buffered or abs(buffered[0][0]) > START_TOLERANCE_S:
                problems.append(f"{label}: the buffer does not start at 0 when playback starts: buffered {buffered}")
            if abs(current) > START_TOLERANCE_S:
                problems.append(f"{label}: playback started at {current:.3f} s, not at 0 (buffered {buffered})")

        if wait("document.getElementById('video').currentTime >= 1", PLAY_TIMEOUT_MS, "1 s of playback"):
            duration = page.evaluate("() => document.getElementById('video').duration")
            expected = rendition["duration_s"]
            if abs(duration - expected) > DURATION_TOLERANCE_S:
                problems.append(f"{label}: the player's duration is {duration:.3f} s, manifest.json says {expected} s")
            page.evaluate(
                "(before) => { const v = document.getElementById('video'); v.currentTime = v.duration - before; }",
                SEEK_BEFORE_END_S,
            )
            wait("window.vtp.ended", END_TIMEOUT_MS, "`ended` after seeking to the last seconds")

        report = page.evaluate("() => ({vtp: window.vtp, now: window.vtpSnapshot()})")
        page.screenshot(path=str(results / f"{player}-{name}.png"), full_page=True)
        (results / f"{player}-{name}.json").write_text(
            json.dumps({**report, "console_errors": console, "requests": site.log[first_request:]}, indent=1)
        )
    finally:
        context.close()

    vtp, now = report["vtp"], report["now"]
    for error in vtp["errors"]:
        if error["fatal"] or error["details"] not in HARMLESS_ERRORS:
            kind = "fatal" if error["fatal"] else "non-fatal"
            problems.append(
                f"{label}: {kind} player error {error['type']}/{error['details']} at t={error['at']:.3f}: {error['message']}"
            )
    for warning in vtp["warnings"]:
        if is_problem_warning(warning["message"]):
            problems.append(f"{label}: player warning at t={warning['at']:.3f}: {warning['message']}")
    problems += [f"{label}: console error: {text}" for text in console]
    problems += [f"{label}: HTTP {status} for {path}" for path, status in site.errors_since(first_request)]

    if not vtp["ended"]:
        problems.append(f"{label}: never reached `ended` (state: {now})")
    if (now["videoWidth"], now["videoHeight"]) != (rendition["width"], rendition["height"]):
        problems.append(
            f"{label}: decoded picture is {now['videoWidth']}x{now['videoHeight']}, "
            f"the rung is {rendition['width']}x{rendition['height']}"
        )
    if now["selectedHeight"] != rendition["height"]:
        problems.append(f"{label}: the player's selected rung is {now['selectedHeight']} high, not {rendition['height']}")
    others = [switch for switch in vtp["switches"] if switch["height"] != rendition["height"]]
    if others:
        problems.append(f"{label}: the player played other rungs too (ABR was meant to be off): {others}")
    quality = now["quality"] or {}
    if not quality.get("total"):
        problems.append(f"{label}: no video frame was decoded ({quality})")
    if quality.get("corrupted"):
        problems.append(f"{label}: {quality['corrupted']} corrupted video frames of {quality['total']}")
    return problems


@pytest.mark.parametrize("player", list(PLAYERS))
def test_every_rung_plays_from_zero_to_the_end(player: str, job: Job, site: Site, browser: Any, results: Path):
    problems: list[str] = []
    for rendition in job.manifest["renditions"]:
        problems += play_rung(browser, site, player, rendition, results)
    assert not problems, f"{player}: {len(problems)} problem(s) (details in {results}):\n" + "\n".join(problems)
