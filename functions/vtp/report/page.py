"""report.html: a job's report page, static and self-contained.

The page is one HTML file: the report data (the dict `vtp.report.data` gathers: see the contract below) is
embedded as JSON in ``<script type="application/json" id="report-data">``, the page's CSS and JavaScript
(``report.css``, ``report.js`` beside this module) are inlined, and the script draws everything (header,
player, renditions table, bit rate per segment charts, timeline, cost) from that JSON. The only other files
it loads are the two player scripts, ``player/hls.min.js`` and ``player/dash.all.min.js`` beside it (loaded
when the player first needs them), and the job's own media. Nothing comes from the internet.

Missing player scripts (``npm`` was not available to ``scripts/setup.sh``) do not stop a report: the page
is made without them and shows, in the player area, that the player scripts were not installed; everything
else is there. `report_files` decides that from `vtp.report.assets.players_available`.

Data contract (JSON-able): ``job_id``, ``status`` (COMPLETE | FAILED), ``input``, ``finished_at``, ``where``
(local | aws), ``error`` ({code, message} | null), ``failed_stage``, ``source`` (| null), ``player``
({hls, dash, thumbnails, poster}, paths relative to report.html | null for FAILED jobs), ``renditions``
(with ``segments``: [{start_s, duration_s, bytes, kbps}] and ``quality`` | null), ``audio`` (| null),
``timeline`` ({total_s, critical_path_s, bars: [{stage, label, chunk, start_s, end_s, wait_s, cold_start,
attempt, retries, worker, critical}]}), ``cost`` ({where, currency, region, price_date, lines: [{item,
quantity, unit, unit_price, usd}], total_usd, mediaconvert_usd, mediaconvert_basis, cpu_s, note}).
Non-finite floats (NaN, infinities) are embedded as null.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from vtp.core.errors import PipelineError
from vtp.core.manifest import REPORT
from vtp.report import assets

HERE = Path(__file__).resolve().parent
REPORT_NAME = REPORT  # beside manifest.json
# Path in the job folder (relative to report.html) -> the player script's name (vtp.report.assets).
PLAYER_FILES: dict[str, str] = {
    "player/hls.min.js": "hls.min.js",
    "player/dash.all.min.js": "dash.all.min.js",
}

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


@cache
def _page_file(name: str) -> str:
    text = (HERE / name).read_text(encoding="utf-8")
    closing = {"report.css": "</style", "report.js": "</script"}.get(name)
    if closing and closing in text.lower():  # would end the inline element early
        raise ValueError(f"{name} must not contain {closing}")
    return text


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def script_json(data: Any) -> str:
    """JSON for inside a <script> element: `<`, `>` and `&` escaped, so no string can end the element."""
    text = json.dumps(_finite(data), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_report(data: dict[str, Any], *, players: bool | None = None) -> str:
    """The whole report.html for `data` (the contract in this module's docstring).

    `players`: whether ``player/hls.min.js`` and ``player/dash.all.min.js`` will be beside the page; None
    (the default) asks `vtp.report.assets.players_available`. Without them the page shows no player but a
    message saying that the player scripts were not installed.
    """
    if players is None:
        players = assets.players_available()
    status = str(data.get("status") or "")
    values = {
        "TITLE": html.escape(f"{data.get('job_id', '?')} · {status} · vtp report"),
        "STATUS": html.escape(status.lower(), quote=True),
        "PLAYERS": "installed" if players else "missing",
        "CSS": _page_file("report.css"),
        "DATA": script_json(data),
        "JS": _page_file("report.js"),
    }
    # One pass over the template: text put in (the data above all) is never searched for placeholders.
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], _page_file("template.html"))


def report_files(data: dict[str, Any]) -> dict[str, bytes]:
    """The files of a report, relative path -> bytes: ``report.html`` and, for a job with a player
    (``data["player"]`` not null, i.e. COMPLETE), ``player/hls.min.js`` and ``player/dash.all.min.js``.

    When the player scripts are not installed, only ``report.html``, whose player area says so. The AWS
    merger uploads these under the job's prefix; `write_report` writes them into a folder.
    """
    files: dict[str, bytes] = {}
    players = False
    if data.get("player"):
        try:
            for path, name in PLAYER_FILES.items():
                files[path] = assets.player_script(name)
            players = True
        except PipelineError:
            files.clear()
    return {REPORT_NAME: render_report(data, players=players).encode("utf-8"), **files}


def _write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(content)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_report(folder: Path, data: dict[str, Any]) -> Path:
    """Write `report_files(data)` into `folder` (each file atomically: ``.<name>.partial`` then a rename;
    report.html last, over any earlier one) and return the path of report.html.

    A player script that is already there with the same bytes is left as it is.
    """
    folder = Path(folder)
    files = report_files(data)
    page = files.pop(REPORT_NAME)
    for relative, content in files.items():
        target = folder / relative
        if target.is_file() and target.stat().st_size == len(content) and target.read_bytes() == content:
            continue
        _write_atomically(target, content)
    report = folder / REPORT_NAME
    _write_atomically(report, page)
    return report
