"""Tiny SavedModels with the fine-tuning export's serving signatures, built in about a second.

The probabilities are a softmax over a fixed linear map of each note's character and word counts, so
they depend on the text deterministically and differ between two `seed`s; `label_names` makes two
versions tell apart at a glance. Signatures, the Classify marking, the warmup requests and the split
into a serving copy (client signatures) and an evaluation copy (all) are `components.trainer.finetune`'s.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from components.trainer.finetune import TEXT_FEATURE, save_serving_and_eval


class FakeClassifier(tf.Module):
    """`serving_default` (text -> probabilities, label_names), `classify` (tf.Examples with a `text`
    feature -> classes, scores), and the Evaluator's `predict_examples` and `transform_features`
    (whose outputs include a sparse tensor, as the Transform's do)."""

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

    def _label_rows(self, rows: tf.Tensor) -> tf.Tensor:
        return tf.tile(self.label_names[None, :], [rows, 1])  # (batch, classes)

    def _parse(self, serialized: tf.Tensor) -> dict:
        return tf.io.parse_example(
            serialized,
            {TEXT_FEATURE: tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.string)},
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        return {
            "probabilities": self._probabilities(text),
            "label_names": self._label_rows(tf.shape(text)[0]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        scores = self._probabilities(self._parse(inputs)[TEXT_FEATURE])
        return {"classes": self._label_rows(tf.shape(scores)[0]), "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(self, examples):
        return {"probabilities": self._probabilities(self._parse(examples)[TEXT_FEATURE])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        return self._parse(examples)


def signatures(module: FakeClassifier) -> dict:
    """Every signature, by the names the fine-tuning export gives them."""
    return {
        "serving_default": module.serve_text,
        "classify": module.classify,
        "predict_examples": module.predict_examples,
        "transform_features": module.transform_features,
    }


def build_export(
    export_dir: Path, label_names: list[str], seed: int = 0, eval_dir: Path | None = None
) -> Path:
    """Writes a fake serving export (client signatures, Classify marking, warmup requests) to
    `export_dir`, and the evaluation copy with every signature to `eval_dir` when given."""
    module = FakeClassifier(label_names, seed)
    save_serving_and_eval(module, signatures(module), str(export_dir), eval_dir and str(eval_dir))
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
