"""Fixtures shared by the browser tests and the integration tests (which open a cloud job's page):
one Debian chromium per session, driven by Playwright for Python (its sync API allows one instance
per process, so there is one fixture for both), and test-results/browser/ for the screenshots.

Debian's chromium, not Playwright's own download (which cannot work here); without chromium or
Playwright the tests that need them fail and say what to install (scripts/test.sh installs both).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "test-results" / "browser"

CHROMIUM_ARGS = [
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Debian's chromium is not installed (no `chromium` on PATH): scripts/test.sh installs it, "
            "or run `apt-get install -y --no-install-recommends chromium`",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: run `scripts/setup.sh --dev` (it is in the dev extra)", pytrace=False)
    playwright = sync_playwright().start()
    try:
        instance = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="session")
def results() -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS
