"""The argmax macro-F1 metric: per-class scores from a confusion matrix, and the TFMA combiner."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_types

from components.eval_metrics import MacroF1, per_class_scores


def test_per_class_scores_match_a_hand_computed_example():
    # rows: true class, columns: predicted class
    confusion = np.array([[3, 1, 0, 0], [2, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    precision, recall, f1, macro = per_class_scores(confusion)
    np.testing.assert_allclose(precision, [3 / 6, 2 / 3, 0, 0])
    np.testing.assert_allclose(recall, [3 / 4, 2 / 4, 0, 0])
    expected_f1 = [2 * 0.5 * 0.75 / 1.25, 2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), 0, 0]
    np.testing.assert_allclose(f1, expected_f1)
    # class 2 never occurs (not averaged); class 3 occurs and is never found (averaged as 0)
    assert macro == pytest.approx(np.mean([expected_f1[0], expected_f1[1], 0.0]))


def test_combiner_scores_argmax_predictions_and_skips_unlabelled_notes():
    computation = MacroF1(num_classes=3).computations()[0]
    combiner = computation.combiner
    inputs = [  # (label, probabilities)
        (0, [0.7, 0.2, 0.1]),
        (0, [0.2, 0.5, 0.3]),
        (1, [0.1, 0.8, 0.1]),
        (-1, [0.9, 0.05, 0.05]),  # no configured class: not scored
    ]
    halves = [combiner.create_accumulator(), combiner.create_accumulator()]
    for index, (label, prediction) in enumerate(inputs):
        element = metric_types.StandardMetricInputs(label=np.array([label]), prediction=np.array(prediction))
        halves[index % 2] = combiner.add_input(halves[index % 2], element)
    output = combiner.extract_output(combiner.merge_accumulators(halves))
    by_name = {(k.name, k.sub_key.class_id if k.sub_key else None): v for k, v in output.items()}
    assert by_name[("f1", 0)] == pytest.approx(2 / 3)  # precision 1, recall 1/2
    assert by_name[("f1", 1)] == pytest.approx(2 / 3)  # precision 1/2, recall 1
    assert by_name[("f1", 2)] == 0.0
    assert by_name[("macro_f1", None)] == pytest.approx(2 / 3)


def test_combiner_reads_its_own_model_when_a_baseline_is_evaluated_too():
    computations = MacroF1(num_classes=2).computations(model_names=["candidate", "baseline"])
    by_model = {c.keys[0].model_name: c.combiner for c in computations}
    element = metric_types.StandardMetricInputs(
        label={"candidate": np.array([1]), "baseline": np.array([1])},
        prediction={"candidate": np.array([0.1, 0.9]), "baseline": np.array([0.9, 0.1])},
    )
    scores = {}
    for model, combiner in by_model.items():
        output = combiner.extract_output(combiner.add_input(combiner.create_accumulator(), element))
        scores[model] = next(v for k, v in output.items() if k.name == "macro_f1")
    assert scores == {"candidate": 1.0, "baseline": 0.0}


def test_entity_combiner_scores_exact_spans_and_labelled_tokens_per_model():
    from components.eval_metrics import EntityF1

    computations = EntityF1().computations(model_names=["candidate", "baseline"])
    by_model = {c.keys[0].model_name: c.combiner for c in computations}
    ignore = -100
    gold = np.array([ignore, 1, 2, 0, 3, ignore])  # B-0 I-0 O B-1
    one_hot = np.eye(5)
    right = one_hot[[0, 1, 2, 0, 3, 0]]  # every entity found (the ignored positions do not count)
    short = one_hot[[0, 1, 0, 0, 3, 0]]  # the first entity cut short: a wrong span
    element = metric_types.StandardMetricInputs(
        label={"candidate": gold, "baseline": gold}, prediction={"candidate": right, "baseline": short}
    )
    scores = {}
    for model, combiner in by_model.items():
        accumulator = combiner.add_input(combiner.create_accumulator(), element)
        merged = combiner.merge_accumulators([accumulator, combiner.create_accumulator()])
        scores[model] = {k.name: v for k, v in combiner.extract_output(merged).items()}
    assert scores["candidate"] == {
        "entity_f1": 1.0, "entity_precision": 1.0, "entity_recall": 1.0, "token_accuracy": 1.0
    }  # fmt: skip
    assert scores["baseline"]["entity_f1"] == pytest.approx(0.5)  # 1 of 2 right each way
    assert scores["baseline"]["token_accuracy"] == pytest.approx(3 / 4)
