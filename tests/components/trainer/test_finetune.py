"""The export's tf.Example parsing: a note alone parses (TF Serving Classify clients send only text)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from components import model_layout
from components.trainer.finetune import WEIGHTS_FILE, WEIGHTS_INFO_FILE, lenient_spec, warm_start


def test_an_example_with_only_text_parses_and_full_examples_are_unchanged():
    raw_spec = {  # as SchemaGen infers ingestion's features: single values without defaults
        "text": tf.io.FixedLenFeature([], tf.string),
        "note_id": tf.io.FixedLenFeature([1], tf.string),
        "num_chars": tf.io.FixedLenFeature([], tf.int64),
        "labels": tf.io.VarLenFeature(tf.string),
    }
    text_only = tf.train.Example()
    text_only.features.feature["text"].bytes_list.value.append(b"Chest pain.")
    serialized = tf.constant([text_only.SerializeToString()])
    with pytest.raises(tf.errors.InvalidArgumentError):  # the spec as inferred refuses it
        tf.io.parse_example(serialized, raw_spec)
    parsed = tf.io.parse_example(serialized, lenient_spec(raw_spec))
    assert parsed["text"].numpy().tolist() == [b"Chest pain."]
    assert parsed["note_id"].numpy().tolist() == [[b""]] and parsed["num_chars"].numpy().tolist() == [0]
    full = tf.train.Example()
    for name, value in (("text", b"x"), ("note_id", b"n7")):
        full.features.feature[name].bytes_list.value.append(value)
    full.features.feature["num_chars"].int64_list.value.append(1)
    parsed = tf.io.parse_example(tf.constant([full.SerializeToString()]), lenient_spec(raw_spec))
    assert parsed["note_id"].numpy().tolist() == [[b"n7"]] and parsed["num_chars"].numpy().tolist() == [1]


def test_warm_starts_only_from_a_model_with_the_same_task_labels_vocabulary_and_backbone(tmp_path):
    import json

    info = {"task": "t", "label_names": ["a", "b"], "vocabulary_sha256": "v", "backbone": {"layers": 2}}
    assert warm_start(None, info) == (None, "from the pretrained backbone")
    model = tmp_path / "model"
    weights, start = warm_start(str(model), info)
    assert weights is None and model_layout.KERAS_DIR in start
    (model / model_layout.KERAS_DIR).mkdir(parents=True)
    (model / model_layout.KERAS_DIR / WEIGHTS_INFO_FILE).write_text(json.dumps(info))
    weights, start = warm_start(str(model), info)
    assert weights == str(model / model_layout.KERAS_DIR / WEIGHTS_FILE)
    assert start.startswith("warm start from the last blessed model")
    for key, value, what in (
        ("label_names", ["a", "c"], "label set"),
        ("task", "u", "task"),
        ("vocabulary_sha256", "w", "vocabulary"),
        ("backbone", {"layers": 3}, "backbone"),
    ):
        weights, start = warm_start(str(model), {**info, key: value})
        assert weights is None and start.endswith(f"has another {what})")
