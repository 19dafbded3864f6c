#!/usr/bin/env bash
# Regenerates requirements.lock from requirements.in with uv (Linux x86_64, Python 3.10).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh >/dev/null
.venv/bin/uv pip compile requirements.in \
  --python-version 3.10 --python-platform x86_64-unknown-linux-gnu \
  --custom-compile-command "scripts/lock.sh" -o requirements.lock
