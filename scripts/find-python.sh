#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (the Lambda runtime is 3.12; localstack-core needs it).
# Looks at PYTHON, then python3.13 / python3.12 / python3 on PATH, then pyenv's versions.
set -u
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
candidates+=(python3.13 python3.12 python3)
if command -v pyenv >/dev/null 2>&1; then
    root="$(pyenv root)"
    for dir in "$root"/versions/3.1[2-9]* "$root"/versions/3.[2-9][0-9]*; do
        [ -x "$dir/bin/python" ] && candidates+=("$dir/bin/python")
    done
fi
for candidate in "${candidates[@]}"; do
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
        "$candidate" -c 'import sys; print(sys.executable)'
        exit 0
    fi
done
echo "no Python >= 3.12 found: install one (e.g. pyenv install 3.12) or set PYTHON" >&2
exit 1
