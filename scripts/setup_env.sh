#!/usr/bin/env bash
# Creates or updates .venv (Python 3.10) from requirements.lock with uv, and installs the project
# in editable mode. Cheap when nothing changed: it re-syncs only when the lock file is newer.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.synced-lock"
uv_version=$(grep -E '^uv==' requirements.lock | cut -d= -f3)

if [[ ! -x "$venv/bin/python" ]]; then
  python=$(scripts/find_python.sh)
  echo "setup: creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi
if [[ ! -x "$venv/bin/uv" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
fi
if [[ ! -f "$stamp" ]] || ! cmp -s requirements.lock "$stamp"; then
  echo "setup: installing requirements.lock into $venv"
  "$venv/bin/uv" pip sync --quiet --python "$venv/bin/python" requirements.lock
  "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --no-deps -e .
  cp requirements.lock "$stamp"
fi
