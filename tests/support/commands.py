"""How the tests start vtp as a user does: its console script (or `python -m vtp.cli`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PROGRESS = re.compile(r"\d+/\d+ \d+:\d\d:\d\d\s*$")  # a rich progress bar line


def vtp_command() -> list[str]:
    script = Path(sys.executable).parent / "vtp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vtp.cli"]
