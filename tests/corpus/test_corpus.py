"""Issue 9's acceptance: every real-world file either transcodes correctly or is refused
within seconds with the right reason.

Each case runs `vtp run INPUT --out out` as a user would (a subprocess, a fresh working
directory, VTP_HOME in a temporary folder) and is measured from outside: wall time, and
the peak resident memory of vtp and every process it started (wait4's ru_maxrss).

- A hostile case exits 1 with exactly one line on stderr, `vtp: INPUT: CODE: message`, the
  expected code; the job folder holds only a FAILED manifest naming that code; nothing is
  written outside --out (no ffreport log anywhere); within 5 s and 300 MB.
- A valid case exits 0 and the published job is checked end to end against the source
  (`tests.support.checks.check_against_source`: every frame at its source time, keyframes
  and segments the same in every rung, HLS and DASH addressing the same files, audio,
  a clean decode, thumbnails); no metadata of the source is in any published file; and
  the case's own checks (rotation, holes, audio placement...).
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.corpus.cases import CASES, COMPLETE, MARK, X264, Case, Finished, Made, ffmpeg, video
from tests.corpus.conftest import run_vtp
from tests.support.checks import check_against_source

pytestmark = pytest.mark.corpus

HOSTILE_WALL_S = 5.0
HOSTILE_PEAK_MB = 300.0
LINE = re.compile(r"^vtp: (?P<input>.+): (?P<code>[A-Z_]+): (?P<message>.+)$")


@pytest.mark.parametrize("case", CASES, ids=[f"{case.kind}-{case.name}" for case in CASES])
def test_case(case, corpus_table, corpus_inputs, tmp_path):
    made = corpus_inputs(case)
    hostile = case.expect != COMPLETE
    outcome = run_vtp(case, made, tmp_path, timeout_s=60 if hostile else 300)
    row = corpus_table.add(case, outcome, passed=False)
    checking = time.monotonic()
    where = f"{case.name}: exit {outcome.returncode}, stderr: {outcome.stderr.strip()[-2000:]}"

    assert "Traceback" not in outcome.stderr, where
    for folder in (outcome.place, made.source.parent):
        assert not any(folder.rglob("ffreport*")), f"ffmpeg wrote a report log in {folder}"
    assert outcome.cwd_after == outcome.cwd_before, "vtp wrote outside --out"
    assert not outcome.fifo_opened, "a file named by a playlist or list was opened"

    if hostile:
        assert outcome.returncode == 1, where
        lines = outcome.stderr.strip().splitlines()
        assert len(lines) == 1, f"{case.name}: stderr has {len(lines)} lines:\n{outcome.stderr}"
        match = LINE.match(lines[0])
        assert match, lines[0]
        assert match.group("code") == case.expect, where
        given = made.arg if made.arg is not None else str(made.source)
        assert match.group("input") == given, lines[0]
        (folder,) = outcome.job_folders()
        assert sorted(p.name for p in outcome.out.iterdir()) == [folder.name], "only the job folder in --out"
        assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "report.html"], "only the FAILED manifest and its page"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["status"] == "FAILED" and manifest["error"]["code"] == case.expect
        assert outcome.wall_s < HOSTILE_WALL_S, f"refused in {outcome.wall_s:.1f} s"
        assert outcome.peak_mb < HOSTILE_PEAK_MB, f"refused with a peak of {outcome.peak_mb:.0f} MB"
    else:
        assert outcome.returncode == 0, where
        (folder,) = outcome.job_folders()
        assert sorted(p.name for p in outcome.out.iterdir()) == [folder.name], "nothing left beside the job"
        manifest = check_against_source(folder, made.source)
        leaked = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and MARK.encode() in p.read_bytes()]
        assert not leaked, f"the source's metadata reached {leaked}"
        if case.check is not None:
            scratch = tmp_path / "scratch"
            scratch.mkdir()
            case.check(Finished(folder, made, manifest, scratch))
    row["check_s"] = round(time.monotonic() - checking, 2)
    row["passed"] = True


@pytest.mark.parametrize("tool", ["ffprobe", "ffmpeg"])
def test_a_tool_killed_by_a_signal_is_the_tools_failure(tool, tmp_path):
    """ffprobe (reading the header) or ffmpeg (encoding) dies of SIGSEGV on a good file:
    TOOL_CRASHED, which is retried, never a reason code that blames the input."""
    from vtp.core.tools import ffmpeg_binary, ffprobe_binary

    source = tmp_path / "good.mp4"
    ffmpeg(*video("160x90", "30", 1.0), *X264, source)
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, real in (("ffmpeg", ffmpeg_binary()), ("ffprobe", ffprobe_binary())):
        if name == tool:
            (tools / name).write_text("#!/bin/sh\nulimit -c 0\nkill -SEGV $$\n")
            (tools / name).chmod(0o755)
        else:
            os.symlink(real, tools / name)
    case = Case(f"{tool}_crash", "tool", "TOOL_CRASHED", lambda folder: Made(source))
    outcome = run_vtp(case, Made(source), tmp_path / "run", timeout_s=60, env_extra={"VTP_FFMPEG_DIR": str(tools)})
    assert outcome.returncode == 1, outcome.stderr
    (line,) = outcome.stderr.strip().splitlines()
    match = LINE.match(line)
    assert match and match.group("code") == "TOOL_CRASHED", line
    assert "SIGSEGV" in line and "not the input's fault" in line, line
    (folder,) = outcome.job_folders()
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "report.html"]
    assert json.loads((folder / "manifest.json").read_text())["error"]["code"] == "TOOL_CRASHED"
    assert outcome.cwd_after == outcome.cwd_before
