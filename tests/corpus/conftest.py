"""Fixtures of the input corpus: the inputs (made once per session, in parallel), `vtp run`
as a subprocess measured with wait4, and the table of every case's time and peak memory
(test-results/corpus.md and corpus.json, written at the end of the session)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.commands import PROGRESS, vtp_command
from tests.corpus.cases import CASES, Case, Made

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "test-results"
# Fast settings: the cheapest x264 preset, two workers, a small ladder (640x360 sources get both rungs).
FAST = ("--preset", "ultrafast", "--workers", "2", "--ladder", "360p,240p")


@dataclass
class Outcome:
    """One `vtp run` of one case, as measured from outside."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # vtp and every child it waited for
    peak_mb: float  # the largest resident set of vtp and its children (wait4's ru_maxrss)
    place: Path  # holds cwd/ (the working directory), home/ (VTP_HOME)
    out: Path
    cwd_before: list[str]
    cwd_after: list[str]
    fifo_opened: bool = False

    @property
    def message_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip() and not PROGRESS.search(line)]

    def job_folders(self) -> list[Path]:
        return sorted(p for p in self.out.iterdir() if not p.name.startswith(".")) if self.out.exists() else []


def _listing(folder: Path, skip: str) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.relative_to(folder).parts[0] != skip
    )


class FifoWatch:
    """Tells whether anyone opened a FIFO for reading (and then feeds it a real video, as a file would)."""

    def __init__(self, fifo: Path, feed: Path | None):
        self.fifo, self.feed = fifo, feed
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "FifoWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO:  # ENXIO: nobody reads it
                    raise
                time.sleep(0.005)
                continue
            self.opened = True
            try:
                os.set_blocking(fd, True)
                if self.feed is not None:
                    os.write(fd, self.feed.read_bytes())
            except OSError:
                pass
            finally:
                os.close(fd)


def run_vtp(case: Case, made: Made, place: Path, *, timeout_s: float, env_extra: dict[str, str] | None = None) -> Outcome:
    """`vtp run INPUT --out out` from a fresh working directory, VTP_HOME beside it."""
    cwd, home = place / "cwd", place / "home"
    cwd.mkdir(parents=True)
    for path in made.in_cwd:
        shutil.copy2(path, cwd / path.name)
    argument = made.arg if made.arg is not None else str(made.source)
    env = {**os.environ, "VTP_HOME": str(home), "COLUMNS": "200"}
    env.pop("VTP_DEBUG", None)
    env.update(env_extra or {})
    command = [*vtp_command(), "run", "--out", "out", *FAST, *case.args, "--", argument]
    before = _listing(cwd, "out")
    watch = FifoWatch(made.watch_fifo, made.feed) if made.watch_fifo else None
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        stdin = made.stdin.open("rb") if made.stdin else subprocess.DEVNULL
        try:
            if watch:
                watch.__enter__()
            started = time.monotonic()
            process = subprocess.Popen(command, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr)
            killer = threading.Timer(timeout_s, process.kill)
            killer.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                killer.cancel()
            wall = time.monotonic() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if watch:
                watch.__exit__()
            if made.stdin:
                stdin.close()
        stdout.seek(0)
        stderr.seek(0)
        out_text = stdout.read().decode("utf-8", "replace")
        err_text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr.read().decode("utf-8", "replace"))
    return Outcome(
        returncode=process.returncode, stdout=out_text, stderr=err_text, wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime, peak_mb=usage.ru_maxrss / 1024.0, place=place, out=cwd / "out",
        cwd_before=before, cwd_after=_listing(cwd, "out"), fifo_opened=bool(watch and watch.opened),
    )


# --- inputs ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus_inputs(request, tmp_path_factory):
    """`corpus_inputs(case)` -> Made: every selected case's input is made at the start, in parallel."""
    root = tmp_path_factory.mktemp("corpus_inputs")
    selected = {item.callspec.params["case"].name for item in request.session.items
                if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)}
    cases = sorted((c for c in CASES if c.name in selected), key=lambda c: -c.make_cost)
    pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))
    futures: dict[str, Future] = {}
    for case in cases:
        folder = root / case.name
        folder.mkdir()
        futures[case.name] = pool.submit(case.make, folder)

    # All made before the first case runs: making them would slow the runs being measured.
    made = {name: future.result(timeout=600) for name, future in futures.items()}

    def get(case: Case) -> Made:
        return made[case.name]

    yield get
    pool.shutdown(wait=False, cancel_futures=True)


# --- the table ---------------------------------------------------------------------------------


@dataclass
class Table:
    rows: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, case: Case, outcome: Outcome | None, passed: bool | None = None, note: str = "") -> dict:
        row = {
            "case": case.name, "category": case.kind, "expected": case.expect,
            "exit": outcome.returncode if outcome else None,
            "code": _code(outcome) if outcome else None,
            "wall_s": round(outcome.wall_s, 2) if outcome else None,
            "cpu_s": round(outcome.cpu_s, 2) if outcome else None,
            "peak_mb": round(outcome.peak_mb, 1) if outcome else None,
            "passed": passed, "note": note or case.note,
            "message": outcome.message_lines[-1][:300] if outcome and outcome.message_lines else "",
        }
        self.rows.append(row)
        return row

    def write(self) -> None:
        if not self.rows:
            return
        RESULTS.mkdir(exist_ok=True)
        order = {case.name: i for i, case in enumerate(CASES)}
        rows = sorted(self.rows, key=lambda r: order.get(r["case"], 1_000))
        elapsed = time.monotonic() - self.started
        hostile = [r for r in rows if r["category"] == "hostile"]
        valid = [r for r in rows if r["category"] == "valid"]
        (RESULTS / "corpus.json").write_text(json.dumps(
            {"cases": rows, "hostile": len(hostile), "valid": len(valid), "session_s": round(elapsed, 1)}, indent=2))
        lines = [
            f"{len(rows)} cases ({len(hostile)} hostile or broken, {len(valid)} unusual but valid); "
            f"`vtp run` as a subprocess, `--preset ultrafast --workers 2 --ladder 360p,240p`; "
            f"wall time and peak resident memory of vtp and all its children (wait4); "
            f"the whole corpus took {elapsed:.0f} s including making the inputs.",
            "",
            "| case | category | expected | exit | result | wall s | peak MB |",
            "|---|---|---|---:|---|---:|---:|",
        ]
        for r in rows:
            result = "COMPLETE" if r["exit"] == 0 else (r["code"] or "?")
            if r["passed"] is False:
                result += " (FAILED CHECK)"
            lines.append(f"| {r['case']} | {r['category']} | {r['expected']} | {r['exit']} | {result} | "
                         f"{r['wall_s']:.2f} | {r['peak_mb']:.0f} |" if r["exit"] is not None else
                         f"| {r['case']} | {r['category']} | {r['expected']} | - | not run | - | - |")
        (RESULTS / "corpus.md").write_text("\n".join(lines) + "\n")


def _code(outcome: Outcome) -> str | None:
    match = re.search(r"^vtp: .*?: ([A-Z_]+): ", outcome.stderr, re.M)
    return match.group(1) if match else None


@pytest.fixture(scope="session")
def corpus_table():
    table = Table()
    yield table
    table.write()
