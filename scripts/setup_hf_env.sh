#!/usr/bin/env bash
# Creates .venv-hf: Python 3.11 with the CPU build of torch and HF transformers, the reference
# implementation for the parity tests. Separate from .venv because that torch build is for 3.11
# only (on 3.10 the registry's torch is a multi-GB CUDA build). Uses pip, which finds that build.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-hf
stamp="$venv/.synced-requirements"
if [[ ! -x "$venv/bin/python" ]]; then
  python=""
  for candidate in python3.11 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11.*/bin/python3.11; do
    path=$(command -v "$candidate" 2>/dev/null || true)
    if [[ -n "$path" ]] && "$path" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      python=$path
      break
    fi
  done
  if [[ -z "$python" ]]; then
    echo "error: no Python 3.11 found (python3.11 on PATH or in pyenv's versions folder);" >&2
    echo "       the HF reference environment needs it for torch's CPU build." >&2
    exit 1
  fi
  "$python" -m venv "$venv"
fi
if [[ ! -f "$stamp" ]] || ! cmp -s requirements-hf.txt "$stamp"; then
  echo "setup: installing requirements-hf.txt into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-hf.txt
  cp requirements-hf.txt "$stamp"
fi
