"""Two workers on localhost pretrain the tiny ALBERT under MultiWorkerMirroredStrategy, picked by the
Trainers' `trainer_common.distribution_strategy()` from TF_CONFIG: each feeds its own share of every
batch, the all-reduce keeps their weights bit-identical, and only the chief writes checkpoints.

Each worker runs `multiworker_worker.py` in its own process (MWMS must own its process from the first
TF op); the test kills both if they are not done in time.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = 4
TIMEOUT_S = 240


def _free_loopback_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Runs the two workers once; returns (folder, return codes, results by worker index)."""
    out = tmp_path_factory.mktemp("multiworker")
    (out / "tmp").mkdir()
    cluster = {"worker": [f"localhost:{port}" for port in _free_loopback_ports(2)]}
    base_env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # CPU collectives: two processes must not share (or fight over) one GPU.
        "CUDA_VISIBLE_DEVICES": "",
        # Where the non-chief worker's scratch checkpoints go, so the test can see them cleaned up.
        "TMPDIR": str(out / "tmp"),
    }
    procs, logs = [], []
    try:
        for index in range(2):
            task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            command = [
                sys.executable, "-m", "tests.pipeline.multiworker_worker",
                "--output", str(out / f"result{index}.json"),
                "--checkpoint-dir", str(out / "checkpoints"),
                "--steps", str(STEPS),
            ]  # fmt: skip
            logs.append(open(out / f"worker{index}.log", "w", encoding="utf-8"))  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env={**base_env, "TF_CONFIG": json.dumps(task)},
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + TIMEOUT_S
        for index, proc in enumerate(procs):
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"worker {index} still running after {TIMEOUT_S}s:\n"
                    + _log_tail(out / f"worker{index}.log")
                )
    finally:
        for proc in procs:
            if proc.poll() is None:
                # SIGKILL: the MWMS runtime catches SIGTERM (preemption handling) and keeps running.
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    codes = [proc.returncode for proc in procs]
    results = {}
    for index, code in enumerate(codes):
        if code == 0:
            results[index] = json.loads((out / f"result{index}.json").read_text(encoding="utf-8"))
    return out, codes, results


def _both(run) -> tuple[dict, dict]:
    out, codes, results = run
    for index, code in enumerate(codes):
        assert code == 0, f"worker {index} exited with {code}:\n" + _log_tail(out / f"worker{index}.log")
    return results[0], results[1]


def test_both_workers_train_under_multi_worker_mirrored_strategy(run):
    for result in _both(run):
        assert result["multi_worker_mirrored"]
        assert result["num_replicas_in_sync"] == 2
        assert result["steps"] == STEPS
        losses = result["history"]["loss"]
        assert len(losses) == 2  # one `fit` epoch per checkpoint, two checkpoints
        assert all(math.isfinite(v) for values in result["history"].values() for v in values)


def test_workers_feed_different_data_yet_end_with_identical_weights(run):
    chief, other = _both(run)
    # Each worker trains on its own half of every global batch...
    assert chief["first_batch_digest"] != other["first_batch_digest"]
    # ...starts from the chief's initial values and takes the same all-reduced steps.
    assert chief["initial_weights_digest"] == other["initial_weights_digest"]
    assert chief["weights_digest"] == other["weights_digest"]
    assert chief["optimizer_digest"] == other["optimizer_digest"]
    assert chief["weights_digest"] != chief["initial_weights_digest"]
    assert chief["history"] == other["history"]  # logs are averaged over both replicas


def test_only_the_chief_writes_the_shared_checkpoint(run):
    _both(run)
    out = run[0]
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint.json", "checkpoint.weights.h5"]
    assert json.loads((checkpoints / "checkpoint.json").read_text(encoding="utf-8"))["step"] == STEPS
    assert not [p.name for p in (out / "tmp").iterdir() if p.name.startswith("checkpoint-worker-")]


def test_logged_loss_is_the_sum_of_the_two_pretraining_losses(run):
    history = _both(run)[0]["history"]
    for loss, mlm, sop in zip(history["loss"], history["mlm_loss"], history["sop_loss"], strict=True):
        assert loss == pytest.approx(mlm + sop, rel=1e-4)
