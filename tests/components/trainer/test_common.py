"""What the Trainers share: the strategy picked from the environment, and the checkpoint folder
that a retried (killed) Trainer execution finds again."""

from __future__ import annotations

import json

from albert_keras.pretrain_loop import checkpoint_interval
from components.trainer import common as trainer_common


def test_resume_dir_is_shared_by_retries_of_the_same_training_only(tmp_path):
    config = {"preset": "tiny", "batch_size": 8}
    files = ["Split-train/data-00000.gz", "Split-train/data-00001.gz"]
    first = trainer_common.resume_dir(str(tmp_path / "pretrain" / "model_run" / "7"), config, files)
    retry = trainer_common.resume_dir(str(tmp_path / "pretrain" / "model_run" / "9"), config, files[::-1])
    assert first == retry and first.startswith(str(tmp_path / "pretrain" / "model_run"))
    changed = trainer_common.resume_dir(
        str(tmp_path / "pretrain" / "model_run" / "9"), {**config, "batch_size": 16}, files
    )
    other_data = trainer_common.resume_dir(str(tmp_path / "pretrain" / "model_run" / "9"), config, files[:1])
    assert len({first, changed, other_data}) == 3


def test_strategy_follows_tf_config(monkeypatch):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert trainer_common.distribution_strategy() is tf.distribute.get_strategy()
    one_worker = {"cluster": {"worker": ["localhost:12345"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(one_worker))
    assert trainer_common.distribution_strategy() is tf.distribute.get_strategy()  # a cluster of one


def test_precision_is_float32_without_a_gpu():
    import keras

    try:
        assert trainer_common.set_precision() == "float32"
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_outputs_go_to_the_real_folder_on_the_chief(tmp_path):
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    assert trainer_common.is_chief(strategy)
    assert trainer_common.worker_path(strategy, str(tmp_path / "serving")) == str(tmp_path / "serving")


def test_checkpoint_interval_divides_the_steps():
    assert checkpoint_interval(20, 10) == 2
    assert checkpoint_interval(30, 5) == 6
    assert checkpoint_interval(7, 5) == 1
    assert checkpoint_interval(0, 10) == 1
    for steps in range(1, 60):
        assert steps % checkpoint_interval(steps, 4) == 0
