"""ServingCheck reads each task's serving_default answer by the outputs that task documents."""

from __future__ import annotations

import numpy as np

from components.serving_check.check import answer_problems

TEXTS = ["Chest pain.", ""]
NAMES = np.array([[b"a", b"b", b"c"]] * 2)


def test_a_softmax_answer_must_sum_to_one():
    good = {"probabilities": np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]), "label_names": NAMES}
    assert answer_problems(TEXTS, good) == []
    bad = {**good, "probabilities": np.array([[0.2, 0.3, 0.6], [1.0, 0.0, 0.0]])}
    assert answer_problems(TEXTS, bad) == ["probabilities do not sum to 1"]
    assert answer_problems(TEXTS, {"label_names": NAMES}) == ["no ['probabilities'] outputs"]


def test_a_multi_label_answer_needs_zero_one_predictions_of_the_same_shape():
    probabilities = np.array([[0.9, 0.8, 0.1], [0.0, 0.0, 0.0]])
    good = {
        "probabilities": probabilities,
        "predicted": np.array([[1, 1, 0], [0, 0, 0]]),
        "label_names": NAMES,
    }
    assert answer_problems(TEXTS, good) == []
    assert answer_problems(TEXTS, {**good, "predicted": np.array([[2, 1, 0], [0, 0, 0]])})
    assert answer_problems(TEXTS, {**good, "probabilities": probabilities + 0.5}) == [
        "probabilities not finite in [0, 1]"
    ]


def test_an_entity_answer_must_index_the_text_sent_and_pad_past_its_count():
    good = {
        "num_entities": np.array([1, 0]),
        "entity_starts": np.array([[0, -1], [-1, -1]]),
        "entity_ends": np.array([[5, -1], [-1, -1]]),
        "entity_types": np.array([[b"Disease", b""], [b"", b""]]),
        "entity_scores": np.array([[0.9, 0.0], [0.0, 0.0]], np.float32),
    }
    assert answer_problems(TEXTS, good) == []
    past_end = {**good, "entity_ends": np.array([[12, -1], [-1, -1]])}
    assert answer_problems(TEXTS, past_end) == ["text 0: entity offsets outside its 11 characters"]
    unpadded = {**good, "entity_types": np.array([[b"Disease", b"x"], [b"", b""]])}
    assert answer_problems(TEXTS, unpadded) == ["text 0: padding past num_entities"]
    assert answer_problems(TEXTS[:1], good) == ["num_entities has shape (2,) for 1 texts"]
