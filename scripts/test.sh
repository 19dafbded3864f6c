#!/usr/bin/env bash
# The project's test command (README, CI): lint, then the tests under the TensorFlow backend,
# then the model-library tests again under the JAX backend. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS="ignore::FutureWarning"

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== pytest, KERAS_BACKEND=tensorflow"
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest "$@"

echo "== pytest tests/albert_keras, KERAS_BACKEND=jax (the tests that run backend code)"
KERAS_BACKEND=jax .venv/bin/python -m pytest tests/albert_keras -m "not backend_independent" "$@"
