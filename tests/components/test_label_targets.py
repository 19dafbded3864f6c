"""Note-level targets from a note's label set: single-label never picks by accident (priority, or the
note is left out and counted), multi-label is the whole set; and the multi-label model's decision
scores put each label's threshold at 0.5, as the Evaluator cuts them."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from components import thresholds
from components.transform_module import LABEL_SET, _label_set, _note_label

NAMES = ["Cardiology", "Neurology", "Radiology", "Surgery"]
NOTES = [
    ["Neurology"],
    ["Neurology", "Radiology"],  # two labels
    [],
    ["Dermatology"],  # not a configured label
    ["Radiology", "Surgery", "Unknown"],
]


def _labels(rows: list[list[str]]) -> tf.SparseTensor:
    return tf.ragged.constant(rows, dtype=tf.string, ragged_rank=1).to_sparse()


def test_several_labels_and_no_priority_leave_the_note_out_and_count_it():
    out = _note_label(_labels(NOTES), NAMES, [])
    assert out["label"].numpy().tolist() == [1, -1, -1, -1, -1]
    assert out["label_ambiguous"].numpy().tolist() == [0, 1, 0, 0, 1]


def test_notes_without_labels_as_serving_sends_them_get_none():
    for priority in ([], ["Surgery"]):
        out = _note_label(_labels([[], []]), NAMES, priority)
        assert out["label"].numpy().tolist() == [-1, -1]
        assert out["label_ambiguous"].numpy().tolist() == [0, 0]


def test_the_priority_decides_among_several_labels():
    out = _note_label(_labels(NOTES), NAMES, ["Surgery", "Radiology"])
    # Radiology outranks Neurology (unlisted); Surgery outranks Radiology and the unknown label.
    assert out["label"].numpy().tolist() == [1, 2, -1, -1, 3]
    assert out["label_ambiguous"].numpy().tolist() == [0, 0, 0, 0, 0]
    # Two labels that the priority does not list are still a tie: left out.
    tie = _note_label(_labels([["Cardiology", "Neurology"]]), NAMES, ["Surgery"])
    assert tie["label"].numpy().tolist() == [-1] and tie["label_ambiguous"].numpy().tolist() == [1]


def test_a_label_feature_that_the_schema_made_dense_reads_alike():
    # SchemaGen makes `labels` a fixed-length feature when every note has exactly one (PubMedQA).
    dense = tf.constant([["Neurology"], ["Surgery"]])
    assert _note_label(dense, NAMES, [])["label"].numpy().tolist() == [1, 3]
    assert _label_set(dense, NAMES)[LABEL_SET].numpy().tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]


def test_multi_label_targets_are_the_configured_labels_a_note_carries():
    out = _label_set(_labels(NOTES), NAMES)
    assert out[LABEL_SET].numpy().tolist() == [
        [0, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 1, 1],
    ]
    assert out["num_labels"].numpy().tolist() == [1, 2, 0, 0, 2]


def test_the_exported_decision_scores_equal_the_library_map():
    from components.trainer.finetune import MultiLabelServingModule

    chosen = np.array([0.2, 0.5, 0.9], np.float32)
    probabilities = np.random.default_rng(0).uniform(size=(50, 3)).astype(np.float32)
    probabilities[0] = chosen  # exactly at the thresholds

    class Module(MultiLabelServingModule):
        def __init__(self):  # only what predict_examples reads
            tf.Module.__init__(self)
            self.thresholds = tf.Variable(chosen)

        def _parse(self, examples):
            return examples

        def tft_layer(self, features):
            return features

        def _probabilities(self, transformed):
            return transformed

    module = Module()
    scores = module.predict_examples.python_function(tf.constant(probabilities))
    expected = thresholds.decision_scores(probabilities, chosen)
    np.testing.assert_allclose(scores["decision_scores"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores["decision_scores"].numpy()[0], 0.5, atol=1e-6)
