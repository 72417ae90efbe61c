"""Finding a Python interpreter for a Lambda runtime name (stdlib only).

Order for runtime ``pythonX.Y``:

1. ``VTP_LAMBDA_PYTHON`` if set (used for every Python runtime; a version
   different from the runtime's is logged, not refused);
2. ``<LocalStack venv>/runtimes/pythonX.Y/bin/python``: the small venv that
   setup.sh makes with only boto3/botocore, as in Lambda's Python runtime;
3. the interpreter running LocalStack (the ``.venv-localstack`` python, 3.13)
   when its version is X.Y: it has boto3 too (and LocalStack's own packages);
4. ``pythonX.Y`` then ``python3`` on PATH, then ``$(pyenv root)/versions/X.Y*``
   (pyenv shims that cannot run are skipped by actually running them): a bare
   interpreter, without boto3 unless the function or a layer brings it.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache

LOG = logging.getLogger(__name__)

ENV_OVERRIDE = "VTP_LAMBDA_PYTHON"
_RUNTIME_RE = re.compile(r"^python(\d+)\.(\d+)$")


def runtime_version(runtime: str | None) -> tuple[int, int] | None:
    """``"python3.12"`` -> ``(3, 12)``; None for anything that is not a Python runtime."""
    m = _RUNTIME_RE.match(str(runtime or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


@lru_cache(maxsize=64)
def interpreter_version(path: str) -> tuple[int, int] | None:
    """Runs the interpreter; None if it does not run (e.g. a pyenv shim for a version not selected)."""
    if os.path.realpath(path) == os.path.realpath(sys.executable):
        return sys.version_info[:2]
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=15, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    m = re.match(r"^(\d+)\.(\d+)$", out.stdout.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _pyenv_root() -> str | None:
    exe = shutil.which("pyenv")
    if exe:
        try:
            out = subprocess.run([exe, "root"], capture_output=True, text=True, timeout=15)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    return root if os.path.isdir(root) else None


def _candidates(version: tuple[int, int]) -> list[str]:
    x, y = version
    out: list[str] = []
    for name in (f"python{x}.{y}", "python3"):
        found = shutil.which(name)
        if found:
            out.append(found)
    root = _pyenv_root()
    if root:
        out.extend(sorted(glob.glob(os.path.join(root, "versions", f"{x}.{y}*", "bin", "python"))))
    return out


def runtimes_dir() -> str:
    """Where setup.sh puts the per-runtime venvs (inside the LocalStack venv)."""
    return os.environ.get("VTP_LAMBDA_RUNTIMES_DIR") or os.path.join(sys.prefix, "runtimes")


@lru_cache(maxsize=16)
def find_interpreter(runtime: str) -> str | None:
    """The interpreter for a Lambda runtime name, or None (see the module doc for the order)."""
    version = runtime_version(runtime)
    if version is None:
        return None
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override:
        got = interpreter_version(override)
        if got is None:
            LOG.error("%s=%s does not run", ENV_OVERRIDE, override)
            return None
        if got != version:
            LOG.warning("%s=%s is Python %d.%d; runtime %s asks for %d.%d",
                        ENV_OVERRIDE, override, *got, runtime, *version)
        return override
    runtime_venv = os.path.join(runtimes_dir(), f"python{version[0]}.{version[1]}", "bin", "python")
    if os.path.exists(runtime_venv) and interpreter_version(runtime_venv) == version:
        return runtime_venv
    if sys.version_info[:2] == version:
        return sys.executable
    for cand in _candidates(version):
        if interpreter_version(cand) == version:
            return cand
    return None
