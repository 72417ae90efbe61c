"""`vtp report`: find a job's page (writing it again if it is missing), fetch a cloud job's,
and serve a job folder on 127.0.0.1 so that the page's player can load the media (browsers
do not load media from file://)."""

from __future__ import annotations

import functools
import json
import threading
import webbrowser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.manifest import MANIFEST, REPORT, Manifest
from vtp.report.data import build_report_data, segments_from_folder
from vtp.report.page import write_report


def local_report(folder: Path) -> Path:
    """The page of the local job in `folder`; written from its manifest if missing."""
    page = folder / REPORT
    if page.is_file():
        return page
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise PipelineError(ErrorCode.INVALID_CONFIG, f"{folder} has no {MANIFEST}: the job has not finished")
    manifest = Manifest.from_dict(json.loads(manifest_path.read_text()))
    return write_report(folder, build_report_data(manifest, segments_from_folder(folder, manifest)))


def fetch_cloud_job(output, job_id: str, dest: Path) -> Path:
    """Download everything under <job_id>/ of the output bucket (`output`: an ObjectStore)
    into dest/<job_id>/: the page, its player scripts, the playlists and the media it plays."""
    keys = list(output.keys(f"{job_id}/"))
    if f"{job_id}/{MANIFEST}" not in keys:
        raise PipelineError(ErrorCode.INPUT_NOT_FOUND, f"no {MANIFEST} for job {job_id} in the output bucket (not finished?)")
    folder = dest / job_id
    for key in keys:
        target = folder / key[len(job_id) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(output.get_bytes(key))
    return folder


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) until the generator is closed; yields the
    page's URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{REPORT}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def open_and_wait(folder: Path, say) -> None:
    """Serve the job folder, open the page in the browser and wait for Ctrl-C."""
    served = serve(folder)
    url = next(served)
    try:
        say(f"serving {folder} at {url} (Ctrl-C to stop)")
        webbrowser.open(url)
        threading.Event().wait()
    except KeyboardInterrupt:  # Ctrl-C is how this ends: not an error
        pass
    finally:
        served.close()
