"""`vtp` as a user runs it: a subprocess of the console script, VTP_HOME in a temporary folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.commands import PROGRESS, vtp_command

# Fast settings: several chunks from a 6 s clip, the cheapest x264 preset.
FAST = ["--preset", "ultrafast", "--gop", "1", "--chunk", "2", "--segment", "2", "--workers", "2"]

# A rich progress bar line ends with "done/total elapsed", e.g. "a.mp4 split  ━━━━ 3/3 0:00:00".


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    home: Path
    out: Path

    @property
    def message_lines(self) -> list[str]:
        """stderr without the progress bars."""
        return [line for line in self.stderr.splitlines() if line.strip() and not PROGRESS.search(line)]


def vtp(*args: str, home: Path, cwd: Path, timeout: float = 120, terminal: bool = False,
        extra_env: dict[str, str] | None = None) -> Run:
    env = {**os.environ, "VTP_HOME": str(home), "COLUMNS": "200", **(extra_env or {})}
    if terminal:  # rich then draws the bars as for a person at a terminal
        env["TTY_COMPATIBLE"] = "1"
    env.pop("VTP_DEBUG", None)
    done = subprocess.run(
        [*vtp_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    stderr = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stderr)  # terminal control codes of the bars
    return Run(done.returncode, done.stdout, stderr, home, cwd / "out")


@pytest.fixture(scope="module")
def inputs(clip, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli_inputs")
    good = folder / "good.mp4"
    shutil.copy(clip("irregular"), good)
    bad = folder / "notes.mp4"
    bad.write_text("shopping list: eggs, milk, a video that is not this file\n")
    return {"good": good, "bad": bad}


def fresh(tmp_path_factory, name: str) -> Path:
    return tmp_path_factory.mktemp(name)


@pytest.fixture(scope="module")
def good_run(inputs, tmp_path_factory) -> Run:
    place = fresh(tmp_path_factory, "cli_good")
    return vtp("run", str(inputs["good"]), "--out", "out", *FAST, home=place / "home", cwd=place, terminal=True)


@pytest.fixture(scope="module")
def bad_run(inputs, tmp_path_factory) -> Run:
    place = fresh(tmp_path_factory, "cli_bad")
    return vtp("run", str(inputs["bad"]), "--out", "out", *FAST, home=place / "home", cwd=place)


@pytest.fixture(scope="module")
def pair_run(inputs, tmp_path_factory) -> Run:
    place = fresh(tmp_path_factory, "cli_pair")
    return vtp("run", str(inputs["good"]), str(inputs["bad"]), "--out", "out", *FAST, home=place / "home", cwd=place)


def job_folders(run: Run) -> list[Path]:
    return sorted(p for p in run.out.iterdir() if not p.name.startswith("."))


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


# --- vtp run -------------------------------------------------------------------------------


def test_a_good_clip_exits_0_and_says_where_and_how_fast(good_run):
    assert good_run.returncode == 0, good_run.stderr
    (folder,) = job_folders(good_run)
    job_id = folder.name
    assert f"job {job_id} COMPLETE" in good_run.stdout
    assert str(folder) in good_run.stdout.replace("\n", "") or f"out/{job_id}" in good_run.stdout
    assert re.search(r"\d+(\.\d+)?x realtime", good_run.stdout)
    assert re.search(r"critical path \d+(\.\d+)? s", good_run.stdout)
    assert "Traceback" not in good_run.stderr
    assert good_run.message_lines == [], "stderr carries only the progress bars"


def test_a_good_clip_publishes_a_complete_ladder(good_run):
    (folder,) = job_folders(good_run)
    data = manifest_of(folder)
    assert data["status"] == "COMPLETE" and data["job_id"] == folder.name
    assert data["chunks"] == 3
    assert (folder / data["outputs"]["hls_master"]).exists() and (folder / data["outputs"]["dash_manifest"]).exists()
    assert (folder / data["outputs"]["poster"]).exists()
    assert not (good_run.out / ".work").exists(), "no intermediate files are left"
    assert (good_run.home / "jobs.sqlite3").exists(), "the job store lives in VTP_HOME"


def test_the_progress_bars_show_every_stage(good_run):
    for stage in ("probe + plan", "encode chunks", "publish"):
        assert stage in good_run.stderr
    assert re.search(r"encode chunks.* 3/3 ", good_run.stderr)


def test_a_bad_input_exits_non_zero_with_one_line_naming_the_code(bad_run, inputs):
    assert bad_run.returncode != 0
    assert "Traceback" not in bad_run.stderr
    assert len(bad_run.stderr.strip().splitlines()) == 1, "piped, stderr holds the error alone (no bars)"
    (line,) = bad_run.message_lines
    assert line.startswith("vtp: ") and "UNSUPPORTED_INPUT" in line
    assert str(inputs["bad"]) in line


def test_a_bad_input_writes_a_failed_manifest_and_nothing_else(bad_run):
    (folder,) = job_folders(bad_run)
    data = manifest_of(folder)
    assert data["status"] == "FAILED"
    assert data["error"]["code"] == "UNSUPPORTED_INPUT" and data["error"]["message"]
    assert data["failed_stage"] == "split"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "report.html"]
    assert f"job {folder.name} FAILED (UNSUPPORTED_INPUT)" in bad_run.stdout


def test_two_inputs_one_bad_exit_1_with_one_complete_and_one_failed(pair_run):
    assert pair_run.returncode == 1
    statuses = sorted(manifest_of(folder)["status"] for folder in job_folders(pair_run))
    assert statuses == ["COMPLETE", "FAILED"]
    assert "COMPLETE" in pair_run.stdout and "FAILED" in pair_run.stdout
    assert "Traceback" not in pair_run.stderr
    assert len(pair_run.message_lines) == 1


def test_status_lists_both_jobs_newest_first(pair_run):
    place = pair_run.out.parent
    listed = vtp("status", "--json", home=pair_run.home, cwd=place)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [r["status"] for r in records] == ["FAILED", "COMPLETE"], "the bad input ran second"
    assert [r["error_code"] for r in records] == ["UNSUPPORTED_INPUT", ""]
    by_status = {manifest_of(f)["status"]: f.name for f in job_folders(pair_run)}
    assert [r["job_id"] for r in records] == [by_status["FAILED"], by_status["COMPLETE"]]
    complete = records[1]
    assert complete["chunks_done"] == complete["chunks_total"] == 3
    assert complete["timings"]["total_s"] > 0

    table = vtp("status", home=pair_run.home, cwd=place)
    assert table.returncode == 0, table.stderr
    first, second = by_status["FAILED"], by_status["COMPLETE"]
    assert first in table.stdout and second in table.stdout
    assert table.stdout.index(first) < table.stdout.index(second)


def test_vtp_report_finds_the_page_and_writes_it_again_from_the_manifest(good_run, tmp_path):
    (folder,) = job_folders(good_run)
    page = folder / "report.html"
    assert f"report: {page}" in good_run.stdout.replace("\n", "") or "report.html" in good_run.stdout
    found = vtp("report", folder.name, home=good_run.home, cwd=good_run.out.parent)
    assert found.returncode == 0 and found.stdout.strip() == str(page), found.stderr
    table = vtp("status", home=good_run.home, cwd=good_run.out.parent, extra_env={"COLUMNS": "400"})
    assert "report.html" in table.stdout

    # A copy of the job without its page: written again, from the manifest and the published files.
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    (copy / "report.html").unlink()
    from vtp.report.serve import local_report

    again = local_report(copy)
    assert again == copy / "report.html"
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', again.read_text(), re.S)
    data = json.loads(found.group(1))
    assert data["job_id"] == folder.name and data["timeline"]["bars"] and data["cost"]["total_usd"] > 0
    assert all(r["segments"] and all(s["bytes"] > 0 for s in r["segments"]) for r in data["renditions"])
    missing = vtp("report", "no-such-job", home=good_run.home, cwd=good_run.out.parent)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no local job" in missing.stderr


def test_an_invalid_setting_is_refused_before_any_job(inputs, tmp_path):
    run = vtp("run", str(inputs["good"]), "--out", "out", "--gop", "2", "--chunk", "6", "--segment", "4", home=tmp_path / "home", cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    (line,) = run.message_lines
    assert line.startswith("vtp: INVALID_CONFIG: ")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def encode_failure(inputs, tmp_path_factory) -> Run:
    """An encoder setting x264 refuses: the first chunk fails while others wait their turn."""
    place = fresh(tmp_path_factory, "cli_encode_failure")
    args = ["--preset", "no-such-preset", "--gop", "1", "--chunk", "2", "--segment", "2", "--workers", "1"]
    return vtp("run", str(inputs["good"]), "--out", "out", *args, home=place / "home", cwd=place)


def test_a_failure_during_encoding_prints_no_traceback(encode_failure):
    assert encode_failure.returncode == 1
    assert "Traceback" not in encode_failure.stderr
    assert "CancelledError" not in encode_failure.stderr


def test_a_failure_during_encoding_is_one_line_naming_the_code(encode_failure):
    assert encode_failure.returncode == 1
    (folder,) = job_folders(encode_failure)
    assert manifest_of(folder)["error"]["code"] == "ENCODE_FAILED"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "report.html"]
    # (what comes before the error line is the subject of the test above)
    lines = encode_failure.message_lines
    errors = [i for i, line in enumerate(lines) if line.startswith("vtp: ")]
    assert len(errors) == 1
    message = lines[errors[0]:]
    assert len(message) == 1, f"the error takes {len(message)} lines:\n" + "\n".join(message)
    assert "ENCODE_FAILED" in message[0] and "no-such-preset" in message[0]


# --- vtp probe -----------------------------------------------------------------------------


def test_probe_prints_what_the_pipeline_sees_and_how_it_would_cut(inputs, tmp_path):
    run = vtp("probe", str(inputs["good"]), "--chunk", "2", "--segment", "1", "--gop", "1", home=tmp_path / "home", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    described = json.loads(run.stdout)
    source = described["source"]
    assert source["video"]["codec"] == "h264" and source["audio"]["codec"] == "aac"
    assert source["duration_s"] == pytest.approx(6.0)
    assert source["video"]["frames_declared"] == 180
    chunks = described["chunks"]
    assert [c["start_s"] for c in chunks] == [0.0, 2.0, 4.0]
    # The clip's keyframes are at 0, 1.3, 2.1, 3.7 and 5.2 s: decoding starts at the one before each chunk.
    assert [round(c["preroll_s"], 3) for c in chunks] == [0.0, 0.7, 0.3]
    assert described["probe"]["bytes_read"] < inputs["good"].stat().st_size


def test_probe_of_a_bad_file_is_one_line(inputs, tmp_path):
    run = vtp("probe", str(inputs["bad"]), home=tmp_path / "home", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout == ""
    (line,) = run.message_lines
    assert line.startswith("vtp: UNSUPPORTED_INPUT: ")
    assert "Traceback" not in run.stderr


def test_sigterm_stops_the_job_its_ffmpeg_and_its_scratch_files(inputs, tmp_path):
    """SIGTERM during the encode: exit 143 at once, no ffmpeg left, job FAILED, no .work/."""
    import signal
    import time

    env = {**os.environ, "VTP_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [*vtp_command(), "run", str(inputs["good"]), "--out", "out", "--preset", "veryslow", "--workers", "1",
         "--gop", "1", "--chunk", "2", "--segment", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list((tmp_path / "out").glob(".work/*/chunk_*")):
        time.sleep(0.05)
    assert list((tmp_path / "out").glob(".work/*/chunk_*")), "the encode did not start"
    children = _children(process.pid)
    assert children, "no ffmpeg was running"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 143
    assert stderr.strip().splitlines()[-1] == "vtp: stopped (SIGTERM)"
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "an ffmpeg outlived vtp"
    assert not (tmp_path / "out" / ".work").exists()
    (folder,) = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert manifest_of(folder)["status"] == "FAILED"
    listed = vtp("status", "--json", home=tmp_path / "home", cwd=tmp_path)
    assert json.loads(listed.stdout)[0]["status"] == "FAILED"


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def test_a_cloud_job_s_folder_is_fetched_with_its_page(good_run, tmp_path):
    """`vtp report --aws` fetches everything under <job_id>/ of the output bucket (here a folder
    standing in for it: the same ObjectStore interface) and opens the page from there."""
    from vtp.core.errors import PipelineError
    from vtp.core.storage import FolderStore
    from vtp.report.serve import fetch_cloud_job, local_report, serve

    (folder,) = job_folders(good_run)
    fetched = fetch_cloud_job(FolderStore(good_run.out), folder.name, tmp_path / "reports")
    assert fetched == tmp_path / "reports" / folder.name
    originals = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    assert sorted(p.relative_to(fetched) for p in fetched.rglob("*") if p.is_file()) == originals
    assert local_report(fetched) == fetched / "report.html"
    served = serve(fetched)
    url = next(served)
    try:
        import urllib.request

        with urllib.request.urlopen(url) as page, urllib.request.urlopen(url.replace("report.html", "master.m3u8")) as master:
            assert page.status == 200 and folder.name.encode() in page.read()
            assert master.read().startswith(b"#EXTM3U")
    finally:
        served.close()
    with pytest.raises(PipelineError, match="no manifest.json"):
        fetch_cloud_job(FolderStore(good_run.out), "no-such-job", tmp_path / "reports")
