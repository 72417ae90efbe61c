#!/usr/bin/env bash
# Test infrastructure: creates (or refreshes) the dedicated LocalStack
# virtualenv .venv-localstack/ at the repository root:
#   * localstack-core with the pins of requirements.txt (+ constraints.txt),
#     on a Python >= 3.13 (2026.3.0 imports warnings.deprecated, new in 3.13);
#   * the vtp local-process Lambda executor plugin (this folder's package,
#     installed editable: edits to the executor need no reinstall);
#   * one small "Lambda runtime" venv per Python runtime the functions use
#     (default python3.12: .venv-localstack/runtimes/python3.12), holding only
#     boto3/botocore as Lambda's own Python runtime does. A runtime whose
#     interpreter is not found here is skipped (the executor then falls back,
#     see vtp_localstack_executor/interpreters.py).
#
# Idempotent: a stamp file records a hash of the inputs (requirements,
# constraints, the plugin's pyproject.toml, interpreter versions, runtimes);
# when it matches, the script exits in a few hundredths of a second.
#
# Usage: testing/localstack/setup.sh [--force]
# Env:   VTP_LOCALSTACK_VENV    venv location (default <repo>/.venv-localstack)
#        VTP_LOCALSTACK_PYTHON  interpreter for the LocalStack venv (>= 3.13)
#        VTP_LAMBDA_RUNTIMES    runtimes to prepare (default "python3.12")
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VTP_LOCALSTACK_VENV:-$repo/.venv-localstack}"
runtimes="${VTP_LAMBDA_RUNTIMES:-python3.12}"
stamp="$venv/.vtp-setup-stamp"
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf 'localstack-setup: %s\n' "$*" >&2; }

# version_ok PY MIN_MINOR [EXACT]: PY runs and is 3.MIN_MINOR or newer (or exactly, with EXACT=1)
version_ok() {
    "$1" -c "import sys; v = sys.version_info[:2]; sys.exit(0 if (v == (3, $2) if ${3:-0} else v >= (3, $2)) else 1)" \
        >/dev/null 2>&1
}

pyenv_versions() {  # candidate interpreters under $(pyenv root)/versions matching glob $1
    local root=""
    if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root 2>/dev/null || true)"; fi
    [[ -n "$root" ]] || root="${PYENV_ROOT:-$HOME/.pyenv}"
    local cand
    for cand in "$root"/versions/$1/bin/python; do
        if [[ -x "$cand" ]]; then echo "$cand"; fi
    done
    return 0
}

# find_python MIN_MINOR [EXACT]: the first interpreter that fits, in the order
# python3.13, python3.12, python3 on PATH, then $(pyenv root)/versions/3.1[2-9]*
find_python() {
    local cand
    for cand in python3.13 python3.12 python3; do
        if command -v "$cand" >/dev/null 2>&1 && version_ok "$cand" "$1" "${2:-0}"; then
            command -v "$cand"; return 0
        fi
    done
    while read -r cand; do
        if [[ -n "$cand" ]] && version_ok "$cand" "$1" "${2:-0}"; then echo "$cand"; return 0; fi
    done < <(pyenv_versions '3.1[2-9]*')
    return 1
}

if [[ -x "$venv/bin/python" ]] && version_ok "$venv/bin/python" 13; then
    py="$venv/bin/python"
elif [[ -n "${VTP_LOCALSTACK_PYTHON:-}" ]]; then
    version_ok "$VTP_LOCALSTACK_PYTHON" 13 || { log "VTP_LOCALSTACK_PYTHON=$VTP_LOCALSTACK_PYTHON is not a Python >= 3.13"; exit 1; }
    py="$VTP_LOCALSTACK_PYTHON"
else
    py="$(find_python 13)" || {
        log "no Python >= 3.13 found (tried python3.13, python3.12, python3, \$(pyenv root)/versions/3.1[2-9]*);"
        log "localstack-core 2026.3.0 needs 3.13 (warnings.deprecated). Set VTP_LOCALSTACK_PYTHON."
        exit 1
    }
fi

inputs_hash() {  # $1 = python used for the venv
    {
        cat "$here/requirements.txt" "$here/constraints.txt" "$here/pyproject.toml"
        "$1" -c 'import sys; print(sys.version)'
        echo "$runtimes"
        for rt in $runtimes; do
            if [[ -x "$venv/runtimes/$rt/bin/python" ]]; then echo "$rt present"; fi
        done
    } | sha256sum | cut -d' ' -f1
}

want="$(inputs_hash "$py")"
if [[ $force == 0 && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$venv/bin/python" ]] || ! version_ok "$venv/bin/python" 13; then
    rm -rf "$venv"
    log "creating $venv with $py ($("$py" --version 2>&1))"
    "$py" -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip_log="$venv/.vtp-setup-pip.log"
: >"$pip_log"
pip_install() {  # pip_install PYTHON ARGS...
    local python="$1"; shift
    if ! "$python" -m pip install "$@" >>"$pip_log" 2>&1; then
        tail -n 40 "$pip_log" >&2
        log "pip install $* failed (full log: $pip_log)"
        exit 1
    fi
}
log "installing localstack-core and pins (first time: about a minute)"
pip_install "$venv/bin/python" --upgrade pip
pip_install "$venv/bin/python" -r "$here/requirements.txt" -c "$here/constraints.txt"
log "installing the executor plugin (editable)"
pip_install "$venv/bin/python" --no-deps -e "$here"

# Lambda runtime venvs: boto3/botocore at the versions LocalStack's venv has.
boto_pins="$("$venv/bin/python" -m pip freeze 2>/dev/null | grep -iE '^(boto3|botocore|s3transfer|jmespath|python-dateutil|six|urllib3)==' || true)"
for rt in $runtimes; do
    minor="${rt#python3.}"
    [[ "$rt" =~ ^python3\.[0-9]+$ ]] || { log "skipping runtime $rt (only python3.X)"; continue; }
    rt_venv="$venv/runtimes/$rt"
    if [[ -x "$rt_venv/bin/python" ]] && version_ok "$rt_venv/bin/python" "$minor" 1; then
        rt_py="$rt_venv/bin/python"
    elif rt_py="$(find_python "$minor" 1)"; then
        rm -rf "$rt_venv"
        log "creating Lambda runtime venv $rt with $rt_py"
        "$rt_py" -m venv "$rt_venv"
    else
        log "no interpreter for $rt found; functions on $rt fall back (see README)"
        continue
    fi
    # shellcheck disable=SC2086
    pip_install "$rt_venv/bin/python" $boto_pins
done

# smoke check: localstack imports and finds our executor plugin by name
# (an unknown LAMBDA_RUNTIME_EXECUTOR silently falls back to docker)
(cd "$venv" && OVERRIDE_IN_DOCKER=0 "$venv/bin/python" - <<'PY'
from localstack.services.lambda_.invocation.runtime_executor import EXECUTOR_PLUGIN_MANAGER
from vtp_localstack_executor import EXECUTOR_NAME
from vtp_localstack_executor.executor import LocalProcessRuntimeExecutor
assert EXECUTOR_PLUGIN_MANAGER.exists(EXECUTOR_NAME), "executor plugin not registered"
assert EXECUTOR_PLUGIN_MANAGER.load(EXECUTOR_NAME).load() is LocalProcessRuntimeExecutor
import localstack.aws.components  # fails on a too-old Python or a bad pin set
from plux import PluginManager
assert PluginManager("localstack.aws.provider").exists("dynamodb:vtp_moto"), "dynamodb provider not registered"
PY
)
inputs_hash "$venv/bin/python" >"$stamp"
log "done in $(( $(date +%s) - start )) s"
