"""The pretraining Trainer's training function on Parquet shards: in process under TensorFlow, in a
JAX child process (components/trainer/child.py) that resumes after a kill and saves a pretrainer that
TensorFlow loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from albert_keras.pretraining_data import MaskingConfig, document_instances, document_key, random_pool
from albert_keras.pretraining_shards import write_shard
from components.trainer import child
from components.trainer.pretrain import StepTimer, train
from tests.albert_keras.test_pretraining_data import VOCAB, synthetic_corpus

SEQ, PREDS = 32, 5
REPO = Path(__file__).resolve().parents[3]
needs_jax = pytest.mark.skipif(not child.jax_installed(), reason="JAX is not installed")


def write_shards(folder: Path, documents, seed: int) -> list[str]:
    config = MaskingConfig(max_seq_length=SEQ, max_predictions_per_seq=PREDS)
    keyed = [(document_key(d), d) for d in documents]
    pool = random_pool(keyed, 100)
    instances = [i for key, d in keyed for i in document_instances(d, key, VOCAB, config, seed, pool)]
    folder.mkdir(parents=True, exist_ok=True)
    half = len(instances) // 2
    paths = [str(folder / "part-0.parquet"), str(folder / "part-1.parquet")]
    write_shard(instances[:half], paths[0], SEQ, PREDS)
    write_shard(instances[half:], paths[1], SEQ, PREDS)
    return paths


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return {
        "train": write_shards(root / "train", synthetic_corpus(40, seed=1), seed=3),
        "eval": write_shards(root / "eval", synthetic_corpus(8, seed=2), seed=3),
    }


def job(tmp_path: Path, shards: dict, steps: int) -> dict:
    return {
        "train_files": shards["train"],
        "eval_files": shards["eval"],
        "vocab_size": len(VOCAB.pieces),
        "preset": "tiny",
        "seq_length": SEQ,
        "max_predictions": PREDS,
        "batch_size": 4,
        "learning_rate": 1e-3,
        "steps": steps,
        "seed": 0,
        "init_checkpoint": "",
        "init_checkpoint_format": "hf",
        "base_model": None,
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "model_file": str(tmp_path / "out" / "pretrainer.keras"),
        "logs": str(tmp_path / "logs"),
        "eval_batches": 2,
    }


def test_trains_in_process_from_shards_and_evaluates_the_eval_split(tmp_path, shards):
    result = train({**job(tmp_path, shards, steps=4), "eval_curve": True})
    assert result["backend"] == keras.backend.backend() and result["chief"]
    assert result["instances"] > 40
    assert len(result["history"]["loss"]) == 4  # one fit epoch per checkpoint, a checkpoint per step
    assert all(np.isfinite(result["history"]["loss"]))
    assert {"mlm_accuracy", "sop_accuracy", "loss"} <= set(result["eval"])
    assert 0 <= result["eval"]["mlm_accuracy"] <= 1
    assert [point["step"] for point in result["curve"]] == [1, 2, 3, 4]  # at every checkpoint
    assert result["curve"][-1]["eval"] == result["eval"]
    seconds = [point["seconds"] for point in result["curve"]]
    assert seconds == sorted(seconds) and len(set(seconds)) == 4
    assert (
        result["timing"]["steps_timed"] == 4 - StepTimer.SKIP and result["timing"]["sequences_per_second"] > 0
    )
    model = keras.saving.load_model(str(tmp_path / "out" / "pretrainer.keras"))
    assert model.backbone.config.vocab_size == len(VOCAB.pieces)
    with open(tmp_path / "checkpoints" / "checkpoint.json") as f:
        assert json.load(f)["step"] == 4


def test_shards_made_for_other_lengths_are_refused_before_training(tmp_path, shards):
    broken = {**job(tmp_path, shards, 2), "seq_length": SEQ * 2}  # the shards were made for SEQ
    with pytest.raises(ValueError, match=r"part-0\.parquet: instances were made for max_seq_length 32 .*64"):
        train(broken)
    with pytest.raises(ValueError, match="seq_length 128 exceeds the tiny preset's 64 positions"):
        train({**broken, "seq_length": 128})


@needs_jax
def test_a_killed_child_resumes_from_its_checkpoint(tmp_path, shards):
    the_job = job(tmp_path, shards, steps=8)
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "job.json").write_text(json.dumps(the_job))
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "components.trainer.child", "components.trainer.pretrain:train"]
    first = subprocess.Popen(
        [*command, str(workdir / "job.json"), str(workdir / "result.json")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = tmp_path / "checkpoints" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        if state.exists() and json.loads(state.read_text())["step"] >= 2:
            break
        time.sleep(0.05)
    assert first.poll() is None, "the child ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 2 <= killed_at < 8 and not (workdir / "result.json").exists()

    result = child.run_child("components.trainer.pretrain:train", the_job, str(workdir))
    assert len(result["history"]["loss"]) == 8 - killed_at  # only the steps after the checkpoint
    assert json.loads(state.read_text())["step"] == 8
    assert result["backend"] == "jax" and result["precision"] == "float32"
    assert {"mlm_accuracy", "sop_accuracy"} <= set(result["eval"])

    # The JAX child's pretrainer is a .keras file that TensorFlow (this process) loads and runs.
    model = keras.saving.load_model(the_job["model_file"])
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(5, len(VOCAB.pieces), (2, SEQ)).astype("int32"),
        "segment_ids": np.zeros((2, SEQ), "int32"),
        "padding_mask": np.ones((2, SEQ), "int32"),
        "mask_positions": np.array([[1, 2, 3, 4, 5]] * 2, "int32"),
    }
    assert np.isfinite(keras.ops.convert_to_numpy(model(x)["mlm_logits"])).all()
