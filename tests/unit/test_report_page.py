"""vtp.report.page and vtp.report.assets: report.html is made from the data as given, safely embedded, and
written atomically with the player scripts beside it (or without them, saying so)."""

from __future__ import annotations

import copy
import json
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from vtp.core.errors import ErrorCode, PipelineError
from vtp.report import assets, page
from vtp.report.page import render_report, report_files, write_report

HLS = b"/* fake hls.js */ window.Hls = function () {};"
DASH = b"/* fake dash.js */ window.dashjs = {};"


def complete_data() -> dict[str, Any]:
    segments = [
        {"start_s": 0.0, "duration_s": 4.0, "bytes": 1_000_000, "kbps": 2000.0},
        {"start_s": 4.0, "duration_s": 4.0, "bytes": 1_500_000, "kbps": 3000.0},
        {"start_s": 8.0, "duration_s": 2.5, "bytes": 500_000, "kbps": 1600.0},
    ]
    bar = {"wait_s": 0.0, "cold_start": False, "attempt": 1, "retries": 0, "worker": "req-1", "critical": False}
    return {
        "job_id": "clip-0123456789abcdef", "status": "COMPLETE", "input": "s3://uploads/clip.mp4",
        "finished_at": "2026-11-30T12:00:00Z", "where": "aws", "error": None, "failed_stage": None,
        "source": {"duration_s": 10.5, "width": 1280, "height": 720, "frame_rate": "30000/1001", "frames": 315,
                   "has_audio": True, "video_codec": "h264", "container": "mov,mp4", "size_bytes": 3_000_000},
        "player": {"hls": "master.m3u8", "dash": "manifest.mpd", "thumbnails": "thumbnails/thumbnails.vtt",
                   "poster": "thumbnails/poster.jpg"},
        "renditions": [
            {"name": "720p", "width": 1280, "height": 720, "codec": "h264", "codecs": "avc1.64001f",
             "target_bitrate_kbps": 3000, "measured_bitrate_kbps": 2285.7, "peak_bitrate_kbps": 3000.0,
             "size_bytes": 3_000_000, "frames": 315, "duration_s": 10.5,
             "quality": {"vmaf_mean": 94.1, "vmaf_p5": 88.0, "vmaf_worst_chunk": 91.2, "psnr_db": 40.1, "ssim": 0.981,
                         "sampling": "every 10th frame"},
             "segments": segments},
            {"name": "360p", "width": 640, "height": 360, "codec": "h264", "codecs": "avc1.64001e",
             "target_bitrate_kbps": 700, "measured_bitrate_kbps": 650.0, "peak_bitrate_kbps": 900.0,
             "size_bytes": 850_000, "frames": 315, "duration_s": 10.5, "quality": None, "segments": segments},
        ],
        "audio": {"codec": "aac", "bitrate_kbps": 128, "measured_bitrate_kbps": 131.0, "channels": 2,
                  "sample_rate": 48000, "size_bytes": 170_000},
        "timeline": {"total_s": 20.0, "critical_path_s": 19.0, "bars": [
            {**bar, "stage": "split", "label": "split", "chunk": None, "start_s": 0.5, "end_s": 2.0, "critical": True},
            {**bar, "stage": "encode", "label": "chunk 0", "chunk": 0, "start_s": 3.0, "end_s": 15.0, "wait_s": 1.0,
             "cold_start": True, "critical": True},
            {**bar, "stage": "encode", "label": "chunk 1", "chunk": 1, "start_s": 3.2, "end_s": 12.0, "attempt": 2,
             "retries": 1},
            {**bar, "stage": "merge", "label": "merge", "chunk": None, "start_s": 16.0, "end_s": 19.5, "critical": True},
        ]},
        "cost": {"where": "aws", "currency": "USD", "region": "us-east-1", "price_date": "2026-11-01",
                 "lines": [{"item": "Lambda encoder", "quantity": 72.0, "unit": "GB-s", "unit_price": 0.0000166667,
                            "usd": 0.0012}],
                 "total_usd": 0.0012, "mediaconvert_usd": 0.0263, "mediaconvert_basis": "HD, basic tier",
                 "cpu_s": None, "note": "prices from the table in vtp.report.cost"},
    }


def failed_data() -> dict[str, Any]:
    return {
        "job_id": "clip-fedcba9876543210", "status": "FAILED", "input": "/in/clip.mp4",
        "finished_at": "2026-11-30T12:00:00Z", "where": "local",
        "error": {"code": "CORRUPT_INPUT", "message": "moov atom not found"}, "failed_stage": "split",
        "source": None, "player": None, "renditions": [], "audio": None,
        "timeline": {"total_s": 0.3, "critical_path_s": 0.3, "bars": []},
        "cost": {"where": "local", "currency": "USD", "region": "us-east-1", "price_date": "2026-11-01", "lines": [],
                 "total_usd": 0.0, "mediaconvert_usd": None, "mediaconvert_basis": None, "cpu_s": 0.1, "note": ""},
    }


class Scripts(HTMLParser):
    """The <script> elements of a page as the browser's HTML parser splits them: (attributes, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.body: dict[str, str | None] = {}
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append((dict(attrs), ""))
        if tag == "body":
            self.body = dict(attrs)
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        if self._in == "title":
            self.title += data


def parse(html_text: str) -> Scripts:
    parser = Scripts()
    parser.feed(html_text)
    parser.close()
    return parser


def embedded(html_text: str) -> Any:
    scripts = parse(html_text).scripts
    data = [text for attrs, text in scripts if attrs.get("id") == "report-data"]
    assert len(data) == 1
    assert [attrs.get("type") for attrs, _ in scripts if attrs.get("id") == "report-data"] == ["application/json"]
    return json.loads(data[0])


@pytest.fixture
def players(tmp_path, monkeypatch) -> dict[str, Path]:
    """Fake player scripts in a fake static folder; no node_modules."""
    static = tmp_path / "static"
    static.mkdir()
    (static / "hls.min.js").write_bytes(HLS)
    (static / "dash.all.min.js").write_bytes(DASH)
    monkeypatch.setattr(assets, "STATIC_DIR", static)
    monkeypatch.setattr(assets, "NODE_MODULES_DIR", tmp_path / "no-node-modules")
    return {"static": static}


@pytest.fixture
def no_players(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(assets, "STATIC_DIR", tmp_path / "no-static")
    monkeypatch.setattr(assets, "NODE_MODULES_DIR", tmp_path / "no-node-modules")


@pytest.mark.parametrize("make", [complete_data, failed_data])
def test_the_embedded_data_parses_back_equal(make, players):
    data = make()
    text = render_report(data)
    assert embedded(text) == data
    assert text.startswith("<!doctype html>")
    parsed = parse(text)
    assert parsed.body["data-status"] == data["status"].lower()
    assert parsed.body["data-players"] == "installed"
    assert data["job_id"] in parsed.title


def test_nothing_in_the_data_can_end_the_script_element(players):
    data = complete_data()
    data["input"] = "/in/</script><script>alert(1)</script><!-- & \u2028 \U0001f3ac \udc80.mp4"
    data["job_id"] = "<b>job</b>"
    data["renditions"][0]["name"] = "</SCRIPT >"
    text = render_report(data)
    assert embedded(text) == data
    scripts = parse(text).scripts
    assert len(scripts) == 2  # the data and the page's own script: nothing more was opened
    assert text.lower().count("</script") == 2
    assert "<b>job</b>" not in text  # the title is escaped too
    assert "&lt;b&gt;job&lt;/b&gt;" in text
    for raw in ("<", ">", "&"):
        assert raw not in scripts[0][1]


def test_non_finite_numbers_become_null(players):
    data = complete_data()
    data["renditions"][0]["measured_bitrate_kbps"] = float("nan")
    data["cost"]["total_usd"] = float("inf")
    back = embedded(render_report(data))
    assert back["renditions"][0]["measured_bitrate_kbps"] is None
    assert back["cost"]["total_usd"] is None


def test_the_page_is_self_contained(players):
    text = render_report(complete_data())
    assert page._page_file("report.css") in text and page._page_file("report.js") in text
    lowered = text.lower()
    for external in ('src="http', "src='http", 'href="http', "url(http", "@import", "//cdn", "fonts.googleapis"):
        assert external not in lowered
    # The page's own script loads only the two player scripts beside it.
    assert '"player/hls.min.js"' in text and '"player/dash.all.min.js"' in text


def test_report_files_of_a_complete_job(players):
    files = report_files(complete_data())
    assert set(files) == {"report.html", "player/hls.min.js", "player/dash.all.min.js"}
    assert files["player/hls.min.js"] == HLS
    assert files["player/dash.all.min.js"] == DASH
    assert parse(files["report.html"].decode()).body["data-players"] == "installed"


def test_report_files_of_a_failed_job_have_no_player(players):
    files = report_files(failed_data())
    assert set(files) == {"report.html"}
    assert embedded(files["report.html"].decode("utf-8")) == failed_data()


def test_missing_player_scripts_make_a_page_without_a_player(no_players):
    assert not assets.players_available()
    with pytest.raises(PipelineError) as raised:
        assets.player_script("hls.min.js")
    assert raised.value.code == ErrorCode.INVALID_CONFIG
    assert "scripts/setup.sh" in raised.value.message and "npm" in raised.value.message
    files = report_files(complete_data())
    assert set(files) == {"report.html"}
    text = files["report.html"].decode()
    assert parse(text).body["data-players"] == "missing"
    assert embedded(text) == complete_data()
    # The message the player area shows then.
    assert "player scripts (hls.js, dash.js) were not installed" in text


def test_one_missing_player_script_is_as_good_as_none(players):
    (players["static"] / "dash.all.min.js").unlink()
    assert set(report_files(complete_data())) == {"report.html"}


def test_player_scripts_come_from_static_before_node_modules(tmp_path, monkeypatch):
    static, modules = tmp_path / "static", tmp_path / "node_modules"
    for name, relative in assets.PLAYER_SCRIPTS.items():
        (modules / relative).parent.mkdir(parents=True, exist_ok=True)
        (modules / relative).write_bytes(b"from node_modules " + name.encode())
    monkeypatch.setattr(assets, "STATIC_DIR", static)
    monkeypatch.setattr(assets, "NODE_MODULES_DIR", modules)
    assert assets.player_script("dash.all.min.js") == b"from node_modules dash.all.min.js"
    static.mkdir()
    (static / "dash.all.min.js").write_bytes(b"from static")
    assert assets.player_script("dash.all.min.js") == b"from static"
    assert assets.player_script("hls.min.js") == b"from node_modules hls.min.js"
    with pytest.raises(ValueError):
        assets.player_script("video.js")


def test_the_real_node_modules_layout_matches_package_json():
    package = json.loads((assets.REPO_DIR / "package.json").read_text())
    assert package["devDependencies"]["hls.js"] == "1.7.4"
    assert package["devDependencies"]["dashjs"] == "5.2.1"
    assert set(assets.PLAYER_SCRIPTS) == set(page.PLAYER_FILES.values())


def test_write_report_writes_the_page_and_the_players(tmp_path, players):
    folder = tmp_path / "job"
    folder.mkdir()
    path = write_report(folder, complete_data())
    assert path == folder / "report.html"
    assert embedded(path.read_text(encoding="utf-8")) == complete_data()
    assert (folder / "player" / "hls.min.js").read_bytes() == HLS
    assert (folder / "player" / "dash.all.min.js").read_bytes() == DASH
    assert sorted(p.name for p in folder.rglob(".*")) == []  # no partial file left


def test_write_report_overwrites_and_skips_unchanged_players(tmp_path, players):
    folder = tmp_path / "job"
    write_report(folder, complete_data())  # makes the folder
    player = folder / "player" / "hls.min.js"
    os.utime(player, (1, 1))
    changed = copy.deepcopy(complete_data())
    changed["timeline"]["total_s"] = 99.0
    write_report(folder, changed)
    assert embedded((folder / "report.html").read_text())["timeline"]["total_s"] == 99.0
    assert player.stat().st_mtime == 1  # the same bytes: not written again


def test_write_report_is_atomic(tmp_path, players, monkeypatch):
    folder = tmp_path / "job"
    write_report(folder, failed_data())
    before = (folder / "report.html").read_bytes()

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(page.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_report(folder, complete_data())
    assert (folder / "report.html").read_bytes() == before
    assert not list(folder.rglob(".*.partial"))


def test_a_failed_job_gets_no_player_folder(tmp_path, players):
    write_report(tmp_path / "job", failed_data())
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["report.html"]
