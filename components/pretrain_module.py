"""Trainer "pretrain": ALBERT's MLM + SOP on the training split, from scratch or continued from a
public checkpoint.

Documents come from the Transform output (each note's sentences, tokenized in the Transform graph);
sentence-order pairs and n-gram masking are made by `albert_keras.pretraining_data`. The model is
saved as `pretrainer.keras` in the Trainer's model folder, which the fine-tuning Trainer takes as
its base model. A killed run resumes from its last checkpoint (see `trainer_common.resume_dir`).

custom_config: tokenizer_dir (added by TokenizedTrainer), preset, seq_length, max_predictions,
batch_size, learning_rate, steps, init_checkpoint, init_checkpoint_format, seed.
"""

from __future__ import annotations

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
from components.sentencepiece_tokenizer.train import vocabulary
from components.transform_module import read_model_proto

PRETRAINER_FILE = "pretrainer.keras"
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


def run_fn(fn_args) -> None:
    custom = dict(fn_args.custom_config)
    model_proto = read_model_proto(custom["tokenizer_dir"])
    vocab = vocabulary(model_proto)
    config = AlbertConfig.preset(custom["preset"], vocab_size=len(vocab.pieces))
    masking = MaskingConfig(
        max_seq_length=int(custom["seq_length"]), max_predictions_per_seq=int(custom["max_predictions"])
    )
    steps, batch = int(fn_args.train_steps), int(custom["batch_size"])
    files = trainer_common.example_files(fn_args.train_files)
    seed = int(custom.get("seed", 0))
    policy = trainer_common.set_precision()
    logging.info(
        "pretraining %s for %d steps, batch %d, %s, on %d files",
        custom["preset"],
        steps,
        batch,
        policy,
        len(files),
    )

    strategy = trainer_common.distribution_strategy()
    with strategy.scope():
        keras.utils.set_random_seed(seed)
        model = AlbertPretrainer(initial_backbone(config, custom))
        schedule = WarmupPolynomialDecay(float(custom["learning_rate"]), max(steps, 1), max(steps // 10, 0))
        model.compile(optimizer=Lamb(schedule))

    def make_dataset():
        source = tf_dataset(lambda: documents(files), vocab, masking, seed=seed)
        return source.shuffle(10_000, seed=seed).batch(
            batch * strategy.num_replicas_in_sync, drop_remainder=True
        )

    logs = os.path.join(fn_args.model_run_dir, "logs")
    every = trainer_common.checkpoint_interval(steps, 10)
    if steps:
        pretrain(
            model,
            make_dataset,
            total_steps=steps,
            checkpoint_dir=trainer_common.resume_dir(fn_args.model_run_dir, custom, files),
            steps_per_checkpoint=every,
            callbacks=[keras.callbacks.TensorBoard(log_dir=trainer_common.worker_path(strategy, logs))],
            verbose=2,
        )
    serving_dir = trainer_common.worker_path(strategy, fn_args.serving_model_dir)
    tf.io.gfile.makedirs(serving_dir)
    local = os.path.join(trainer_common.worker_path(strategy, fn_args.model_run_dir), PRETRAINER_FILE)
    tf.io.gfile.makedirs(os.path.dirname(local))
    model.save(local)
    tf.io.gfile.copy(local, os.path.join(serving_dir, PRETRAINER_FILE), overwrite=True)
