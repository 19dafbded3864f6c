"""Tiny SavedModels with the fine-tuning export's serving signatures, built in about a second.

The probabilities are a softmax over a fixed linear map of each note's character and word counts, so
they depend on the text deterministically and differ between two `seed`s; `label_names` makes two
versions tell apart at a glance. Signatures, the Classify marking and the warmup requests are the
ones `components.finetune_module` exports.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from components.finetune_module import mark_classify_signature, write_warmup_requests


class FakeClassifier(tf.Module):
    """`serving_default` (text -> probabilities, label_names) and `classify` (tf.Examples with a
    `text` feature -> classes, scores)."""

    def __init__(self, label_names: list[str], seed: int):
        super().__init__()
        self.label_names = tf.constant(label_names)
        weights = np.random.default_rng(seed).normal(size=(3, len(label_names)))
        self.weights = tf.constant(weights, tf.float32)

    def _probabilities(self, text: tf.Tensor) -> tf.Tensor:
        chars = tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.float32) / 50.0
        words = tf.cast(tf.strings.split(text).row_lengths(), tf.float32) / 10.0
        features = tf.stack([chars, words, tf.ones_like(chars)], axis=1)  # (batch, 3)
        return tf.nn.softmax(features @ self.weights, axis=-1)  # (batch, classes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        return {"probabilities": self._probabilities(text), "label_names": self.label_names}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        text = tf.io.parse_example(inputs, {"text": tf.io.FixedLenFeature([], tf.string, default_value="")})
        scores = self._probabilities(text["text"])
        classes = tf.tile(self.label_names[None, :], [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}


def build_export(export_dir: Path, label_names: list[str], seed: int = 0) -> Path:
    """Writes a fake export (signatures, Classify marking, warmup requests) to `export_dir`."""
    module = FakeClassifier(label_names, seed)
    signatures = {"serving_default": module.serve_text, "classify": module.classify}
    tf.saved_model.save(module, str(export_dir), signatures=signatures)
    mark_classify_signature(str(export_dir), "classify")
    write_warmup_requests(str(export_dir))
    return export_dir


def publish_version(export_dir: Path, base_path: Path, version: int) -> Path:
    """Copies an export to `<base_path>/<version>/` as the Pusher would: under a temporary name first,
    then one rename, so a poller never sees half a version."""
    base_path.mkdir(parents=True, exist_ok=True)
    staging = base_path / f".staging-{version}"
    shutil.copytree(export_dir, staging)
    target = base_path / str(version)
    staging.rename(target)
    return target


def publish_corrupt_version(base_path: Path, version: int) -> Path:
    """A `<base_path>/<version>/` whose saved_model.pb is not a SavedModel: it can never load."""
    folder = base_path / str(version)
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x96\x01 this is not a SavedModel \xff\xfe")
    return folder
