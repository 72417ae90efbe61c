"""Fixtures for playing a real vtp job in a real browser.

- `job`: the pipeline (`vtp run`, a subprocess) on the sample clip, once per session.
- `site`: one HTTP server on 127.0.0.1 (a free port) that serves the job folder under /job/, the player page
  (testing/browser/) under /player/ and the players from node_modules under /vendor/; it keeps a log of the
  requests so that a test can see every missing file.
- `browser` and `results` (Debian's chromium through Playwright; test-results/browser/) are in tests/conftest.py,
  shared with the integration tests.

Nothing is skipped: without chromium, Playwright or the npm players the tests fail and say what to install
(scripts/test.sh installs all three).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.commands import vtp_command

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_media" / "big_buck_bunny_720p_16s.mp4"
PLAYER_PAGE = REPO / "testing" / "browser"

# URL prefix -> folder. /job/ is added once the job exists.
VENDOR = {
    "/vendor/hls.js/": REPO / "node_modules" / "hls.js" / "dist",
    "/vendor/dashjs/": REPO / "node_modules" / "dashjs" / "dist" / "modern" / "umd",
}
PLAYER_FILES = {
    "/vendor/hls.js/": "hls.min.js",
    "/vendor/dashjs/": "dash.all.min.js",
}


PIPELINE_TIMEOUT_S = 300


@dataclass
class Job:
    folder: Path
    manifest: dict[str, Any]


@dataclass
class Site:
    url: str
    log: list[tuple[str, int]] = field(default_factory=list)  # (path, status) of every request

    def errors_since(self, start: int) -> list[tuple[str, int]]:
        return [(path, status) for path, status in self.log[start:] if status >= 400]


@pytest.fixture(scope="session")
def job(tmp_path_factory) -> Job:
    """The real pipeline, as a user runs it, on the 16 s Big Buck Bunny clip (720p, with audio)."""
    base = tmp_path_factory.mktemp("browser_job")
    out = base / "out"
    env = {**os.environ, "VTP_HOME": str(base / "home"), "COLUMNS": "200"}
    env.pop("VTP_DEBUG", None)
    done = subprocess.run(
        [*vtp_command(), "run", str(SAMPLE), "--out", str(out), "--workers", "2"],
        cwd=base, env=env, capture_output=True, text=True, timeout=PIPELINE_TIMEOUT_S,
    )
    if done.returncode != 0:
        pytest.fail(
            f"vtp run failed (exit {done.returncode}):\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    folders = [path.parent for path in out.glob("*/manifest.json")]
    assert len(folders) == 1, f"expected one job folder with a manifest.json in {out}, found {folders}"
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETE", manifest.get("error")
    assert manifest["renditions"], "manifest.json lists no renditions"
    return Job(folders[0], manifest)


def make_handler(routes: dict[str, Path], log: list[tuple[str, int]]) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {
            **SimpleHTTPRequestHandler.extensions_map,
            ".m3u8": "application/vnd.apple.mpegurl",
            ".mpd": "application/dash+xml",
            ".m4s": "video/iso.segment",
            ".mp4": "video/mp4",
            ".vtt": "text/vtt",
            ".js": "text/javascript",
        }

        def translate_path(self, path: str) -> str:
            path = unquote(urlsplit(path).path)
            for prefix, folder in routes.items():
                if path.startswith(prefix):
                    target = (folder / path[len(prefix):]).resolve()
                    if target == folder.resolve() or folder.resolve() in target.parents:
                        return str(target)
            return str(REPO / "does-not-exist")  # anything else is a 404

        def end_headers(self) -> None:
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            log.append((self.path, int(code) if str(code).isdigit() else 0))

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the log above is enough
            pass

    return Handler


@pytest.fixture(scope="session")
def site(job: Job) -> Iterator[Site]:
    for prefix, folder in VENDOR.items():
        player = folder / PLAYER_FILES[prefix]
        if not player.is_file():
            pytest.fail(f"{player} is missing: run `npm ci` (package.json pins hls.js and dashjs)", pytrace=False)
    routes = {"/job/": job.folder, "/player/": PLAYER_PAGE, **VENDOR}
    log: list[tuple[str, int]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(routes, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="browser-test-http", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield Site(f"http://{host}:{port}", log)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
