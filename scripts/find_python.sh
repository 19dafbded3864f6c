#!/usr/bin/env bash
# Prints the path of a Python 3.10 interpreter: $PYTHON if set, else python3.10 on PATH,
# else the newest 3.10 in pyenv's versions folder. Exits 1 with a clear message if none exists.
set -euo pipefail

is_310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }

if [[ -n "${PYTHON:-}" ]]; then
  if is_310 "$PYTHON"; then echo "$PYTHON"; exit 0; fi
  echo "error: PYTHON=$PYTHON is not a Python 3.10 interpreter" >&2
  exit 1
fi
for candidate in python3.10 python3 python; do
  path=$(command -v "$candidate" 2>/dev/null || true)
  if [[ -n "$path" ]] && is_310 "$path"; then echo "$path"; exit 0; fi
done
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
for path in $(ls -d "$pyenv_root"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V -r); do
  if is_310 "$path"; then echo "$path"; exit 0; fi
done
cat >&2 <<'MSG'
error: no Python 3.10 found.
This project needs Python 3.10 (TFX 1.16 supports no newer Python). Looked for:
  - $PYTHON, python3.10, python3 and python on PATH
  - $PYENV_ROOT/versions/3.10.*/bin/python3.10 (PYENV_ROOT defaults to ~/.pyenv)
Install one (for example `pyenv install 3.10`) or point PYTHON at it.
MSG
exit 1
