"""Every figure of `bench/quality.py`, computed by `components/scores.py` (the Evaluator's definitions),
each with a 95% percentile bootstrap interval over the test split's units (notes, sentences, questions).

A row hands in its test predictions in one form per task kind:
    multi_label    0/1 [notes, labels] decisions (thresholds already applied; see `decide_multi_label`)
    single_label   class ids [notes]
    pair           class ids [questions]
    entities       one BIO id sequence per sentence, one id per word

Every row of a run resamples the same unit indices (one seed), so the rows' intervals are comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from components import scores
from components.thresholds import choose_thresholds

#: Primary metric first, per task kind.
METRICS: dict[str, tuple[str, ...]] = {
    "multi_label": ("micro_f1", "multi_label_macro_f1"),
    "single_label": ("macro_f1", "accuracy"),
    "pair": ("accuracy", "macro_f1"),
    "entities": ("f1", "precision", "recall"),
}


def primary(kind: str) -> str:
    return METRICS[kind][0]


def decide_multi_label(
    eval_probabilities: np.ndarray, eval_gold: np.ndarray, test_probabilities: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label thresholds chosen on the eval split (`components.thresholds.choose_thresholds`) and the
    test decisions they give: (thresholds [labels], 0/1 decisions [notes, labels])."""
    thresholds = choose_thresholds(eval_probabilities, eval_gold)
    return thresholds, (np.asarray(test_probabilities) >= thresholds).astype(np.int64)


def point_scores(kind: str, gold: Any, predicted: Any, num_labels: int) -> dict[str, float]:
    """The task's metrics on all units."""
    if kind == "multi_label":
        result = scores.multi_label_scores(gold, predicted)
    elif kind in ("single_label", "pair"):
        result = scores.single_label_scores(gold, predicted, num_labels)
    elif kind == "entities":
        result = scores.entity_scores(gold, predicted)
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    return {name: float(result[name]) for name in METRICS[kind]}


def _statistic(kind: str, gold: Any, predicted: Any, num_labels: int, metric: str) -> Callable:
    """The metric on a resample of unit indices."""
    if kind == "entities":
        # Micro entity F1 is a ratio of sums over sentences: resampling sentences resamples their counts,
        # so each resample sums the per-sentence counts, computed once.
        counts = scores.entity_row_counts(gold, predicted).sum(axis=2)  # [sentences, 3], all types
        return lambda indices: scores.precision_recall_f1(*counts[indices].sum(axis=0))[metric]
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    if kind == "multi_label":
        return lambda indices: scores.multi_label_scores(gold[indices], predicted[indices])[metric]
    return lambda indices: scores.single_label_scores(gold[indices], predicted[indices], num_labels)[metric]


def scored(
    kind: str, gold: Any, predicted: Any, num_labels: int, samples: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """{metric: {"value", "low", "high"}} with the 95% bootstrap interval of each (`scores.bootstrap`)."""
    values = point_scores(kind, gold, predicted, num_labels)
    result = {}
    for metric, value in values.items():
        statistic = _statistic(kind, gold, predicted, num_labels, metric)
        low, high = scores.bootstrap(len(gold), statistic, samples=samples, seed=seed)
        result[metric] = {"value": value, "low": low, "high": high}
    return result


def multi_hot(examples: Sequence, label_names: Sequence[str]) -> np.ndarray:
    """0/1 [examples, labels] of each example's label set."""
    index = {name: i for i, name in enumerate(label_names)}
    matrix = np.zeros((len(examples), len(label_names)), dtype=np.int64)
    for row, example in enumerate(examples):
        for label in example.labels:
            matrix[row, index[label]] = 1
    return matrix


def class_ids(examples: Sequence, label_names: Sequence[str]) -> np.ndarray:
    """[examples] class id of each single-label example."""
    index = {name: i for i, name in enumerate(label_names)}
    return np.array([index[example.labels[0]] for example in examples], dtype=np.int64)


def gold_of(task: Any, split: str) -> Any:
    """A split's gold answers in the form `scored` takes for the task's kind."""
    units = task.splits[split]
    if task.kind == "multi_label":
        return multi_hot(units, task.label_names)
    if task.kind in ("single_label", "pair"):
        return class_ids(units, task.label_names)
    return [list(sentence.tags) for sentence in units]
