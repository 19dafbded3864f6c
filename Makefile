# The two set-up commands of the README. Each creates or updates its environment first.
.PHONY: setup setup-hf run smoke test lint lock

setup:
	@scripts/setup_env.sh

setup-hf:
	@scripts/setup_hf_env.sh

run: setup
	TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python pipeline_runner.py run --tiny --output-dir runs/local

smoke: setup
	.venv/bin/python pipeline_runner.py smoke

test: setup setup-hf
	@scripts/test.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

lock:
	scripts/lock.sh
