#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite (unit, infra, integration).
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
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_CLI_TELEMETRY=1
exec .venv/bin/python -m pytest "$@"
