"""The Evaluator's own metrics: argmax macro F1 (per-class scores from a confusion matrix), multi-label F1
from decision scores, and entity F1 on words; their TFMA combiners, and one run through TFMA."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_types

from components.eval_metrics import EntityF1, MacroF1, MultiLabelF1, per_class_scores


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
        output = combiner.extract_output(merged)
        scores[model] = {k.name: v for k, v in output.items() if k.sub_key is None}
    assert scores["candidate"] == {
        "entity_f1": 1.0, "entity_precision": 1.0, "entity_recall": 1.0, "token_accuracy": 1.0
    }  # fmt: skip
    assert scores["baseline"]["entity_f1"] == pytest.approx(0.5)  # 1 of 2 right each way
    assert scores["baseline"]["token_accuracy"] == pytest.approx(3 / 4)


def _by_name(output: dict) -> dict:
    """{(name, class id or None): value} of one model's output."""
    return {(k.name, k.sub_key.class_id if k.sub_key else None): v for k, v in output.items()}


def _one_pass(combiner, elements, parts: int = 1):
    """The combiner's output over `elements`, accumulated in `parts` accumulators then merged."""
    accumulators = [combiner.create_accumulator() for _ in range(parts)]
    for index, element in enumerate(elements):
        accumulators[index % parts] = combiner.add_input(accumulators[index % parts], element)
    return combiner.extract_output(combiner.merge_accumulators(accumulators))


def test_entity_combiner_reports_each_type_on_words_and_merges_in_any_order():
    ignore = -100
    # Types 0 and 1 (B-0 = 1, I-0 = 2, B-1 = 3, I-1 = 4); num_types=3, so type 2 reports 0 too.
    # Note 1, words  gold B-0 I-0 O B-1, predicted B-0 I-0 O O; w1 is two pieces (an ignored one inside
    #   the entity, predicted O, which must not cut it).
    # Note 2, words  gold O B-1 I-1, predicted B-0 B-1 I-1.
    # Type 0: gold 1, predicted 2, right 1 -> P 1/2, R 1, F1 2/3.
    # Type 1: gold 2, predicted 1, right 1 -> P 1, R 1/2, F1 2/3. Micro: 2 right of 3 each way: 2/3.
    # Words right: 3 of 4, then 2 of 3: 5/7.
    notes = [
        ([ignore, 1, 2, ignore, 0, 3, ignore], [0, 1, 2, 0, 0, 0, 0]),
        ([ignore, 0, 3, 4, ignore], [0, 1, 3, 4, 0]),
    ]
    one_hot = np.eye(5)
    elements = [
        metric_types.StandardMetricInputs(label=np.array(gold), prediction=one_hot[predicted])
        for gold, predicted in notes
    ]
    combiner = EntityF1(num_types=3).computations()[0].combiner
    by_name = _by_name(_one_pass(combiner, elements))
    for name in ("entity_f1", "entity_precision", "entity_recall"):
        assert by_name[(name, None)] == pytest.approx(2 / 3)
        assert by_name[(name, 2)] == 0.0
    assert by_name[("token_accuracy", None)] == pytest.approx(5 / 7)
    assert (by_name[("entity_precision", 0)], by_name[("entity_recall", 0)]) == (0.5, 1.0)
    assert (by_name[("entity_precision", 1)], by_name[("entity_recall", 1)]) == (1.0, 0.5)
    assert by_name[("entity_f1", 0)] == by_name[("entity_f1", 1)] == pytest.approx(2 / 3)
    assert len(by_name) == 4 + 3 * 3
    # Merging is associative: ((a + b) + c) == (a + (b + c)), and equal to one accumulator.
    a, b, c = (combiner.add_input(combiner.create_accumulator(), e) for e in [*elements, elements[0]])
    left = combiner.merge_accumulators([combiner.merge_accumulators([a, b]), c])
    right = combiner.merge_accumulators([a, combiner.merge_accumulators([b, c])])
    assert combiner.extract_output(left) == combiner.extract_output(right)
    assert combiner.extract_output(left) == _one_pass(combiner, [*elements, elements[0]])


# Three labels, four notes; decision scores, a label predicted at >= 0.5.
MULTI_LABELS = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0]])
MULTI_SCORES = np.array([[0.9, 0.2, 0.5], [0.1, 0.7, 0.3], [0.4, 0.8, 0.0], [0.6, 0.49, 0.1]])
# Predicted: {0, 2}, {1}, {1}, {0}. Exactly right: notes 1 and 3 -> subset accuracy 2/4.
# Label 0: tp 2, fp 0, fn 0 -> P 1,   R 1,   F1 1
# Label 1: tp 1, fp 1, fn 1 -> P 1/2, R 1/2, F1 1/2
# Label 2: tp 1, fp 0, fn 0 -> P 1,   R 1,   F1 1
# Micro: tp 4, fp 1, fn 1 -> P 4/5, R 4/5, F1 4/5. Macro over labels 0-2: 5/6.


def _multi_label_elements(labels, scores):
    return [
        metric_types.StandardMetricInputs(label=label, prediction=score)
        for label, score in zip(labels, scores, strict=True)
    ]


def test_multi_label_combiner_matches_a_hand_computed_example():
    combiner = MultiLabelF1(num_classes=4).computations()[0].combiner  # label 3 never occurs
    by_name = _by_name(_one_pass(combiner, _multi_label_elements(MULTI_LABELS, MULTI_SCORES)))
    expected = {
        ("micro_f1", None): 4 / 5,
        ("micro_precision", None): 4 / 5,
        ("micro_recall", None): 4 / 5,
        ("multi_label_macro_f1", None): 5 / 6,  # label 3 is not averaged
        ("subset_accuracy", None): 1 / 2,
        **{(name, 0): 1.0 for name in ("f1", "precision", "recall")},
        **{(name, 1): 0.5 for name in ("f1", "precision", "recall")},
        **{(name, 2): 1.0 for name in ("f1", "precision", "recall")},
        **{(name, 3): 0.0 for name in ("f1", "precision", "recall")},
    }
    assert by_name == pytest.approx(expected)


def test_the_multi_label_metrics_own_key_is_the_one_it_is_named_for():
    # A MetricConfig threshold (the blessing) applies to the metric's own key: micro F1 or macro F1.
    for name in ("micro_f1", "multi_label_macro_f1"):
        computation = MultiLabelF1(name=name, num_classes=4).computations()[0]
        assert computation.keys[0].name == name
        by_name = _by_name(_one_pass(computation.combiner, _multi_label_elements(MULTI_LABELS, MULTI_SCORES)))
        assert by_name[("micro_f1", None)] == pytest.approx(4 / 5)
        assert by_name[("multi_label_macro_f1", None)] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="name must be one of"):
        MultiLabelF1(name="f1").computations()


def test_multi_label_combiner_agrees_with_sklearn_and_merges_like_one_pass():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(7)
    for trial in range(5):
        rows, labels = rng.integers(1, 60), rng.integers(1, 9)
        gold = (rng.random((rows, labels)) < rng.uniform(0.05, 0.5)).astype(np.int64)
        gold[:, -1] = 0  # a label that never occurs in the gold labels
        scores = rng.random((rows, labels)) ** rng.uniform(0.3, 3)  # some labels never predicted
        elements = _multi_label_elements(gold, scores)
        combiner = MultiLabelF1().computations()[0].combiner
        whole = _one_pass(combiner, elements)
        assert _one_pass(combiner, elements, parts=trial + 2) == pytest.approx(whole)
        by_name = _by_name(whole)
        predicted = (scores >= 0.5).astype(np.int64)
        seen = np.flatnonzero(gold.any(axis=0) | predicted.any(axis=0))
        micro = f1_score(gold, predicted, average="micro", zero_division=0)
        assert by_name[("micro_f1", None)] == pytest.approx(micro)
        macro = f1_score(gold, predicted, average="macro", labels=seen, zero_division=0) if seen.size else 0.0
        assert by_name[("multi_label_macro_f1", None)] == pytest.approx(macro)
        per_label = f1_score(gold, predicted, average=None, labels=range(labels), zero_division=0)
        assert [by_name[("f1", i)] for i in range(labels)] == pytest.approx(per_label)
        assert by_name[("subset_accuracy", None)] == pytest.approx((gold == predicted).all(axis=1).mean())


def test_multi_label_combiner_grows_to_the_widest_vector_and_reads_its_own_model():
    combiner = MultiLabelF1().computations()[0].combiner
    narrow = combiner.add_input(
        combiner.create_accumulator(),
        metric_types.StandardMetricInputs(label=np.array([1]), prediction=np.array([0.9])),
    )
    wide = combiner.add_input(
        combiner.create_accumulator(),
        metric_types.StandardMetricInputs(label=np.array([0, 0, 1]), prediction=np.array([0.1, 0.2, 0.3])),
    )
    by_name = _by_name(combiner.extract_output(combiner.merge_accumulators([narrow, wide])))
    assert (by_name[("f1", 0)], by_name[("f1", 2)]) == (1.0, 0.0)
    assert by_name[("multi_label_macro_f1", None)] == 0.5  # labels 0 and 2 occur, label 1 does not
    assert ("f1", 1) in by_name and ("f1", 3) not in by_name
    with pytest.raises(ValueError, match="2 scores for 3 labels"):
        combiner.add_input(
            combiner.create_accumulator(),
            metric_types.StandardMetricInputs(label=np.array([0, 0, 1]), prediction=np.array([0.1, 0.2])),
        )

    computations = MultiLabelF1(num_classes=2).computations(model_names=["candidate", "baseline"])
    element = metric_types.StandardMetricInputs(
        label={"candidate": np.array([1, 0]), "baseline": np.array([1, 0])},
        prediction={"candidate": np.array([0.8, 0.1]), "baseline": np.array([0.2, 0.9])},
    )
    scores = {}
    for computation in computations:
        combiner = computation.combiner
        output = combiner.extract_output(combiner.add_input(combiner.create_accumulator(), element))
        scores[computation.keys[0].model_name] = next(v for k, v in output.items() if k.name == "micro_f1")
    assert scores == {"candidate": 1.0, "baseline": 0.0}


def test_tfma_runs_the_multi_label_and_entity_metrics_from_their_eval_config():
    # Model-free: labels and predictions are columns; the metrics load by class name and module, with
    # their JSON config, as the pipeline's EvalConfig names them.
    import json

    import pandas as pd
    import tensorflow_model_analysis as tfma

    def run(frame: pd.DataFrame, class_name: str, config: dict) -> dict:
        metric = tfma.MetricConfig(
            class_name=class_name, module="components.eval_metrics", config=json.dumps(config)
        )
        eval_config = tfma.EvalConfig(
            model_specs=[tfma.ModelSpec(label_key="label", prediction_key="prediction")],
            slicing_specs=[tfma.SlicingSpec()],
            metrics_specs=[tfma.MetricsSpec(metrics=[metric])],
        )
        (_, by_sub_key), *_ = tfma.analyze_raw_data(frame, eval_config).slicing_metrics
        return {
            (name, sub_key): value["doubleValue"]
            for sub_key, metrics in by_sub_key[""].items()
            for name, value in metrics.items()
        }

    multi_label = pd.DataFrame({"label": list(MULTI_LABELS), "prediction": list(MULTI_SCORES)})
    scores = run(multi_label, "MultiLabelF1", {"num_classes": 4})
    assert scores[("micro_f1", "")] == pytest.approx(4 / 5)
    assert scores[("multi_label_macro_f1", "")] == pytest.approx(5 / 6)
    assert scores[("subset_accuracy", "")] == pytest.approx(1 / 2)
    assert scores[("f1", "classId:1")] == pytest.approx(1 / 2) and scores[("recall", "classId:3")] == 0.0

    ignore = -100  # words B-0 I-0 O B-1 (w1 two pieces); predicted B-0 I-0 O O
    gold, predicted = [ignore, 1, 2, ignore, 0, 3, ignore], [0, 1, 2, 0, 0, 0, 0]
    tokens = pd.DataFrame({"label": [gold], "prediction": [np.eye(5)[predicted].reshape(-1)]})
    scores = run(tokens, "EntityF1", {"num_types": 2})
    assert scores[("entity_f1", "")] == pytest.approx(2 / 3)  # P 1, R 1/2
    assert scores[("token_accuracy", "")] == pytest.approx(3 / 4)
    assert scores[("entity_f1", "classId:0")] == 1.0 and scores[("entity_recall", "classId:1")] == 0.0
