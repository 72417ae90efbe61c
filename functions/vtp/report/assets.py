"""The two player scripts a report page loads: hls.js and dash.js, pinned in package.json.

Nothing is fetched from the internet. A script is looked up, in order:

1. ``functions/vtp/report/static/<name>``: a git-ignored folder that ``scripts/setup.sh`` fills from
   ``node_modules`` after ``npm ci``; it is part of the ``vtp`` package tree, so it travels into the Lambda
   code asset (``infra/packaging.py`` copies the whole ``functions/vtp`` folder);
2. ``<repo>/node_modules/...``: a development checkout where ``npm ci`` ran.

When neither exists, `player_script` raises ``PipelineError(INVALID_CONFIG)``; `vtp.report.page.report_files`
then still makes the page, without a player (it says so in the player area).
"""

from __future__ import annotations

from pathlib import Path

from vtp.core.errors import ErrorCode, PipelineError

STATIC_DIR = Path(__file__).resolve().parent / "static"
# functions/vtp/report/assets.py -> the repository root of a development checkout.
REPO_DIR = Path(__file__).resolve().parents[3]
NODE_MODULES_DIR = REPO_DIR / "node_modules"

# File name -> where npm puts it (package.json pins hls.js 1.7.4 and dashjs 5.2.1).
PLAYER_SCRIPTS: dict[str, Path] = {
    "hls.min.js": Path("hls.js") / "dist" / "hls.min.js",
    "dash.all.min.js": Path("dashjs") / "dist" / "modern" / "umd" / "dash.all.min.js",
}


def player_script_path(name: str) -> Path:
    """Where the player script `name` ("hls.min.js" or "dash.all.min.js") is; PipelineError when nowhere."""
    if name not in PLAYER_SCRIPTS:
        raise ValueError(f"unknown player script {name!r}: expected one of {sorted(PLAYER_SCRIPTS)}")
    candidates = (STATIC_DIR / name, NODE_MODULES_DIR / PLAYER_SCRIPTS[name])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise PipelineError(
        ErrorCode.INVALID_CONFIG,
        f"the player script {name} is not installed (looked in {candidates[0]} and {candidates[1]}): "
        "run scripts/setup.sh (needs npm) so that report pages get a player",
    )


def player_script(name: str) -> bytes:
    """The bytes of the player script `name` ("hls.min.js" or "dash.all.min.js")."""
    return player_script_path(name).read_bytes()


def players_available() -> bool:
    """Whether both player scripts are installed."""
    try:
        for name in PLAYER_SCRIPTS:
            player_script_path(name)
    except PipelineError:
        return False
    return True
