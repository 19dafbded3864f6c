"""Trainer "pretrain": ALBERT's MLM + SOP on the training split, from scratch or continued from a
public checkpoint.

Documents come from the Transform output (each note's sentences, tokenized in the Transform graph);
sentence-order pairs and n-gram masking are made by `albert_keras.pretraining_data`. The model is
saved as `pretrainer.keras` in the Trainer's model folder, which the fine-tuning Trainer takes as
its base model, with `pretraining.json` beside it (the vocabulary's sha256, the steps behind the
weights). A killed run resumes from its last checkpoint (see `trainer_common.resume_dir`).

Continued pretraining: given a `base_model` (the pipeline's last pretrained model, made from other
examples: pipeline/resolvers.py) whose vocabulary is the tokenizer's, the Trainer loads it and trains
`continued_steps` more steps (a fresh warmup and decay at the same peak rate) instead of `train_steps`
from scratch. A base model with another vocabulary cannot be continued: the run starts from scratch and
says why. How the run started is recorded in the model run's training.json (`start`).

custom_config: tokenizer_dir (added by TokenizedTrainer), preset, seq_length, max_predictions,
batch_size, learning_rate, steps, init_checkpoint, init_checkpoint_format, seed, continued_steps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
from albert_keras.optimization import Lamb, WarmupPolynomialDecay
from albert_keras.pretrain_loop import pretrain
from albert_keras.pretraining_data import MaskingConfig, tf_dataset
from components import trainer_common
from components.progress import ProgressFile
from components.sentencepiece_tokenizer.train import vocabulary, vocabulary_sha256
from components.transform_module import read_model_proto

PRETRAINER_FILE = "pretrainer.keras"
#: Beside PRETRAINER_FILE: vocabulary_sha256, preset, steps (every step behind the weights).
PRETRAINING_FILE = "pretraining.json"
SHUFFLE_BUFFER = 10_000
SHUFFLE_BUFFER_BATCHES = 100
#: In the model run folder: how the run started, its steps and losses.
TRAINING_FILE = "training.json"
_SPEC = {
    "sentence_token_ids": tf.io.VarLenFeature(tf.int64),
    "sentence_lengths": tf.io.VarLenFeature(tf.int64),
}


def documents(files: list[str]) -> Iterator[list[np.ndarray]]:
    """Each note as its list of tokenized sentences."""
    for example in trainer_common.read_examples(files, _SPEC):
        ids, lengths = example["sentence_token_ids"], example["sentence_lengths"]
        yield [s for s in np.split(ids.astype(np.int32), np.cumsum(lengths)[:-1]) if len(s)]


def initial_backbone(config: AlbertConfig, custom_config: dict) -> AlbertBackbone:
    """A new backbone, or one loaded from `init_checkpoint` (whose vocabulary must be the tokenizer's)."""
    path = custom_config.get("init_checkpoint") or ""
    if not path:
        return AlbertBackbone(config)
    if custom_config.get("init_checkpoint_format", "hf") == "google":
        from albert_keras.convert.google import load_google_model

        backbone = load_google_model(path, task="backbone")
    else:
        from albert_keras.convert.hf_files import load_hf_model

        backbone = load_hf_model(path, task="backbone")
    if backbone.config.vocab_size != config.vocab_size:
        raise ValueError(
            f"init_checkpoint {path} has a vocabulary of {backbone.config.vocab_size}, the pipeline's "
            f"tokenizer {config.vocab_size}: continue pretraining with the checkpoint's own tokenizer"
        )
    return backbone


def continuation(base_model_dir: str | None, vocabulary_sha256: str) -> tuple[dict | None, str]:
    """The base model's pretraining.json when the run can continue from it, and how the run starts."""
    if not base_model_dir:
        return None, "from scratch"
    path = os.path.join(base_model_dir, PRETRAINING_FILE)
    if not tf.io.gfile.exists(path):
        return None, f"from scratch (the last pretrained model, {base_model_dir}, has no {PRETRAINING_FILE})"
    with tf.io.gfile.GFile(path) as f:
        base = json.load(f)
    if base.get("vocabulary_sha256") != vocabulary_sha256:
        return None, f"from scratch (the last pretrained model, {base_model_dir}, has another vocabulary)"
    return base, f"continued from {base_model_dir} ({base.get('steps', 0)} steps behind it)"


def run_fn(fn_args) -> None:
    custom = dict(fn_args.custom_config)
    model_proto = read_model_proto(custom["tokenizer_dir"])
    sha256 = vocabulary_sha256(model_proto)
    vocab = vocabulary(model_proto)
    config = AlbertConfig.preset(custom["preset"], vocab_size=len(vocab.pieces))
    masking = MaskingConfig(
        max_seq_length=int(custom["seq_length"]), max_predictions_per_seq=int(custom["max_predictions"])
    )
    base, start = continuation(getattr(fn_args, "base_model", None), sha256)
    steps, batch = int(fn_args.train_steps), int(custom["batch_size"])
    if base is not None:
        steps = int(custom.get("continued_steps", steps))
    files = trainer_common.example_files(fn_args.train_files)
    seed = int(custom.get("seed", 0))
    policy = trainer_common.set_precision()
    logging.info(
        "pretraining %s %s for %d steps, batch %d, %s, on %d files",
        custom["preset"],
        start,
        steps,
        batch,
        policy,
        len(files),
    )

    strategy = trainer_common.distribution_strategy()
    with strategy.scope():
        keras.utils.set_random_seed(seed)
        if base is not None:
            local_base = os.path.join(fn_args.model_run_dir, "base_" + PRETRAINER_FILE)
            tf.io.gfile.makedirs(fn_args.model_run_dir)
            tf.io.gfile.copy(os.path.join(fn_args.base_model, PRETRAINER_FILE), local_base, overwrite=True)
            model = AlbertPretrainer(keras.saving.load_model(local_base, safe_mode=True).backbone)
        else:
            model = AlbertPretrainer(initial_backbone(config, custom))
        schedule = WarmupPolynomialDecay(float(custom["learning_rate"]), max(steps, 1), max(steps // 10, 0))
        model.compile(optimizer=Lamb(schedule))

    def make_dataset():
        source = tf_dataset(lambda: documents(files), vocab, masking, seed=seed)
        global_batch = batch * strategy.num_replicas_in_sync
        # The buffer is filled from the Python instance generator before the first step. A hundred
        # batches spans many notes (a note gives a few consecutive instances), and keeps the first
        # step from waiting on 10,000 instances, minutes on a small CPU.
        buffer = min(SHUFFLE_BUFFER, SHUFFLE_BUFFER_BATCHES * global_batch)
        return source.shuffle(buffer, seed=seed).batch(global_batch, drop_remainder=True)

    logs = os.path.join(fn_args.model_run_dir, "logs")
    every = trainer_common.checkpoint_interval(steps, 10)
    history = {}
    if steps:
        history = pretrain(
            model,
            make_dataset,
            total_steps=steps,
            checkpoint_dir=trainer_common.resume_dir(fn_args.model_run_dir, custom, files),
            steps_per_checkpoint=every,
            callbacks=[
                keras.callbacks.TensorBoard(log_dir=trainer_common.worker_path(strategy, logs)),
                ProgressFile("pretrain"),
            ],
            verbose=2,
        )
    serving_dir = trainer_common.worker_path(strategy, fn_args.serving_model_dir)
    tf.io.gfile.makedirs(serving_dir)
    local = os.path.join(trainer_common.worker_path(strategy, fn_args.model_run_dir), PRETRAINER_FILE)
    tf.io.gfile.makedirs(os.path.dirname(local))
    model.save(local)
    tf.io.gfile.copy(local, os.path.join(serving_dir, PRETRAINER_FILE), overwrite=True)
    behind = int(base.get("steps", 0)) if base is not None else 0
    record = {"vocabulary_sha256": sha256, "preset": custom["preset"], "steps": behind + steps}
    _write(os.path.join(serving_dir, PRETRAINING_FILE), record)
    losses = history.get("loss", [])
    _write(
        os.path.join(trainer_common.worker_path(strategy, fn_args.model_run_dir), TRAINING_FILE),
        {
            "start": start,
            # The loop always ends at `steps` (a resumed run that had finished trains none again).
            "steps_trained": steps,
            "final_loss": float(losses[-1]) if losses else None,
            "steps_behind_weights": behind + steps,
            **{k: float(v[-1]) for k, v in history.items() if k != "loss" and v},
        },
    )


def _write(path: str, record: dict) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(record, indent=1, sort_keys=True))
