"""A vtp job played by real players in a real browser: hls.js and dash.js in Debian's chromium.

For each player and each rung of the job (ABR off, that rung only, no other rung's file even requested):
- the video starts at presentation time 0: the buffers (together and each track's own) start at 0, playback
  starts at 0, and the player shifts no timestamps (timestampOffset 0);
- it plays from 0 to the `ended` event (at 4x, so every segment boundary is played through in a few seconds),
  leaving one buffered range per track that ends at manifest.json's duration of that track (a hole at a
  segment boundary would be a second range);
- after a seek to 2 s before the end it plays to `ended` again;
- no player error, fatal or not, no player warning, no console error, no failed request;
- the decoded picture is the rung's size and no frame is corrupted.
A screenshot and what the player reported (JSON) are kept in test-results/browser/ for a person to look at.
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
# Every timestampOffset a player sets on a SourceBuffer. Timestamps that start at 0 need no shift (the players
# then leave it at 0); hls.js, for one, hides a track that starts late behind a timestampOffset (shifting the
# other track with it) rather than reporting a gap, so any shift is a defect.
OFFSET_TOLERANCE_S = 0.001
DURATION_TOLERANCE_S = 0.1  # the player's duration and each track's buffered end vs manifest.json's durations
SEEK_BEFORE_END_S = 2.0
START_TIMEOUT_MS = 20_000  # page load to the first `playing`
END_TIMEOUT_MS = 30_000  # playing to `ended` (4 s of a 16 s clip at 4x)
PLAYBACK_RATE = 4  # plays the whole clip in a quarter of its duration; Chrome decodes 720p that fast here

# Non-fatal player errors that are allowed. None: every non-fatal error hls.js reports for this output is a
# real problem (e.g. `bufferSeekOverHole` at the start means a timestamp offset, `bufferStalledError` a stall
# at a segment boundary, `bufferNudgeOnStall` a hole in the buffer).
HARMLESS_ERRORS: frozenset[str] = frozenset()

# The players' own log warnings and errors that are allowed (substrings). None so far: hls.js and dash.js warn
# about gaps, overlaps, stalls and timestamp problems, which are exactly what this test is looking for.
HARMLESS_WARNINGS: tuple[str, ...] = ()


def is_problem_warning(message: str) -> bool:
    return not any(harmless in message for harmless in HARMLESS_WARNINGS)


def play_rung(browser: Any, site: Site, player: str, job: Job, rendition: dict[str, Any], results: Path) -> list[str]:
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
        page.goto(f"{site.url}/player/player.html?player={player}&src={PLAYERS[player]}&rung={name}&rate={PLAYBACK_RATE}")

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
            for track in start["tracks"]:
                ranges = track["buffered"]
                if not ranges or abs(ranges[0][0]) > START_TOLERANCE_S:
                    problems.append(f"{label}: the {track['type']} buffer does not start at 0 when playback starts: {ranges}")

            # The whole rung, from 0, faster than real time: every segment boundary is played through.
            if wait("window.vtp.ended", END_TIMEOUT_MS, f"`ended` after playing from 0 at {PLAYBACK_RATE}x"):
                # The whole clip is in the buffers now: one range per track, a hole at a segment boundary
                # would be a second range.
                for track in page.evaluate("() => window.vtpSnapshot().tracks"):
                    if len(track["buffered"] or []) != 1:
                        problems.append(
                            f"{label}: the {track['type']} buffer has holes after playing it all: {track['buffered']}"
                        )
                duration = page.evaluate("() => document.getElementById('video').duration")
                expected = rendition["duration_s"]
                if abs(duration - expected) > DURATION_TOLERANCE_S:
                    problems.append(f"{label}: the player's duration is {duration:.3f} s, manifest.json says {expected} s")
                # Then a seek to the last seconds and the end again.
                page.evaluate(
                    "(before) => { const v = document.getElementById('video'); window.vtp.ended = false;"
                    " v.currentTime = v.duration - before; v.play(); }",
                    SEEK_BEFORE_END_S,
                )
                wait("window.vtp.ended", END_TIMEOUT_MS, f"`ended` after seeking to {SEEK_BEFORE_END_S:g} s before the end")

        try:
            report = page.evaluate("() => ({vtp: window.vtp, now: window.vtpSnapshot()})")
        except Exception as error:  # the page crashed or never ran its script
            return [*problems, f"{label}: could not read the player's state: {error}", *console]
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
            problems.append(f"{label}: player {warning['level']} at t={warning['at']:.3f}: {warning['message']}")
    problems += [f"{label}: console error: {text}" for text in console]
    problems += [f"{label}: HTTP {status} for {path}" for path, status in site.errors_since(first_request)]
    other_rungs = tuple(f"/job/{other['name']}/" for other in job.manifest["renditions"] if other["name"] != name)
    fetched = sorted({path for path, _ in site.log[first_request:] if path.startswith(other_rungs)})
    if fetched:
        problems.append(f"{label}: the player fetched other rungs' files (ABR was meant to be off): {fetched}")

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
    audio = job.manifest.get("audio")
    expected_tracks = {"video": rendition["duration_s"], **({"audio": audio["duration_s"]} if audio else {})}
    seen_tracks = sorted(track["type"].split("/")[0] for track in now["tracks"])
    if seen_tracks != sorted(expected_tracks):
        problems.append(f"{label}: the player made SourceBuffers for {seen_tracks}, expected {sorted(expected_tracks)}")
    for track in now["tracks"]:
        expected_end = expected_tracks.get(track["type"].split("/")[0])
        ranges = track["buffered"] or [[0, 0]]
        if expected_end is not None and abs(ranges[-1][1] - expected_end) > DURATION_TOLERANCE_S:
            problems.append(
                f"{label}: the {track['type']} buffer ends at {ranges[-1][1]:.3f} s, manifest.json says {expected_end} s"
                f" (buffered {track['buffered']}, timestampOffset {track['timestampOffset']})"
            )
    for offset in now["offsets"]:
        if abs(offset["value"]) > OFFSET_TOLERANCE_S:
            problems.append(f"{label}: the player shifted {offset['type']} by timestampOffset {offset['value']:.6f} s")
    quality = now["quality"] or {}
    if not quality.get("total"):
        problems.append(f"{label}: no video frame was decoded ({quality})")
    if quality.get("corrupted"):
        problems.append(f"{label}: {quality['corrupted']} corrupted video frames of {quality['total']}")
    return problems


@pytest.mark.parametrize("player", list(PLAYERS))
def test_every_rung_plays_from_zero_to_the_end(player: str, browser: Any, job: Job, site: Site, results: Path):
    problems: list[str] = []
    for rendition in job.manifest["renditions"]:
        problems += play_rung(browser, site, player, job, rendition, results)
    assert not problems, f"{player}: {len(problems)} problem(s) (details in {results}):\n" + "\n".join(problems)
