#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite (unit, infra, integration, browser).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
if [ -x testing/localstack/setup.sh ]; then
    testing/localstack/setup.sh
fi
if [ -f package.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
# The browser tests (tests/browser) drive Debian's chromium: Playwright's own browser download cannot work here.
if ! command -v chromium >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    apt_install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
    apt_install 2>/dev/null || { $sudo apt-get update -qq >/dev/null && apt_install; } \
        || echo "scripts/test.sh: could not install chromium; tests/browser will fail" >&2
fi
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_CLI_TELEMETRY=1
.venv/bin/ruff check --quiet .   # pyproject.toml [tool.ruff]: the errors that are always bugs
exec .venv/bin/python -m pytest "$@"
