"""The task metrics as plain numpy, with no TensorFlow: one definition that the Evaluator's metrics
(`eval_metrics`), the fine-tuning Trainer's in-training evaluation, the model card and
`bench/quality.py` all compute with, so that every figure of the project means the same thing.

Per task, from a split's gold answers and predictions:
    single-label notes and text pairs   accuracy, macro_f1 (over the classes that occur in the gold
                                        or the predictions), per-class precision/recall/F1
    multi-label notes                   micro_f1 / precision / recall over (note, label) pairs,
                                        multi_label_macro_f1, subset_accuracy, per label
    entities                            conlleval: an entity counts when its type and both boundaries
                                        match; micro over entities (entity_f1), per type

`bootstrap` gives a percentile interval for any of them by resampling the split's units (notes,
sentences) with replacement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: The BIO id of a word outside every entity; type t is B = 1 + 2t, I = 2 + 2t.
OUTSIDE = 0


def precision_recall_f1(true_positives: float, gold: float, predicted: float) -> dict[str, float]:
    """Precision, recall and F1 from counts; 0 where a ratio is undefined."""
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def rates(
    true_positives: np.ndarray, predicted: np.ndarray, actual: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1) per class from its counts of true positives, predictions and gold
    occurrences; 0 where a ratio is undefined."""
    true_positives, predicted, actual = (
        np.asarray(a, dtype=float) for a in (true_positives, predicted, actual)
    )
    zeros = np.zeros_like(true_positives)
    precision = np.divide(true_positives, predicted, out=zeros.copy(), where=predicted > 0)
    recall = np.divide(true_positives, actual, out=zeros.copy(), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=zeros.copy(), where=total > 0)
    return precision, recall, f1


def macro_over_seen(f1: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the labels or the predictions (0 when none does)."""
    seen = (np.asarray(predicted) > 0) | (np.asarray(actual) > 0)
    return float(np.asarray(f1)[seen].mean()) if seen.any() else 0.0


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(precision, recall, f1) per class and the macro F1 over classes seen, from a confusion matrix
    indexed [true class, predicted class]."""
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision, recall, f1 = rates(np.diag(confusion), predicted, actual)
    return precision, recall, f1, macro_over_seen(f1, predicted, actual)


def confusion_matrix(gold: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] of single-label answers (rows with gold < 0 left out)."""
    gold, predicted = np.asarray(gold, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    keep = gold >= 0
    size = max(num_classes, int(gold.max(initial=-1)) + 1, int(predicted.max(initial=-1)) + 1)
    confusion = np.zeros((size, size))
    np.add.at(confusion, (gold[keep], predicted[keep]), 1.0)
    return confusion


def single_label_scores(gold: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict[str, Any]:
    """accuracy and macro_f1 of predicted class ids against gold ids, and per_class
    {precision, recall, f1} lists in class order."""
    confusion = confusion_matrix(gold, predicted, num_classes)
    precision, recall, f1, macro = per_class_scores(confusion)
    total = confusion.sum()
    return {
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "macro_f1": macro,
        "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()},
    }


def multi_label_counts(gold: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-label true positives, false positives and false negatives of 0/1 [notes, labels] arrays."""
    gold, predicted = np.asarray(gold) > 0, np.asarray(predicted) > 0
    return {
        "true_positives": (gold & predicted).sum(axis=0).astype(float),
        "false_positives": (~gold & predicted).sum(axis=0).astype(float),
        "false_negatives": (gold & ~predicted).sum(axis=0).astype(float),
    }


def multi_label_from_counts(
    true_positives: np.ndarray, false_positives: np.ndarray, false_negatives: np.ndarray
) -> dict[str, Any]:
    """micro_f1/precision/recall, multi_label_macro_f1 and per_label lists from per-label counts."""
    predicted, actual = true_positives + false_positives, true_positives + false_negatives
    precision, recall, f1 = rates(true_positives, predicted, actual)
    micro = precision_recall_f1(*(float(np.sum(a)) for a in (true_positives, actual, predicted)))
    return {
        "micro_f1": micro["f1"],
        "micro_precision": micro["precision"],
        "micro_recall": micro["recall"],
        "multi_label_macro_f1": macro_over_seen(f1, predicted, actual),
        "per_label": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()},
    }


def multi_label_scores(gold: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The multi-label figures of 0/1 [notes, labels] answers, subset_accuracy included."""
    gold, predicted = np.asarray(gold) > 0, np.asarray(predicted) > 0
    scores = multi_label_from_counts(**multi_label_counts(gold, predicted))
    scores["subset_accuracy"] = float((gold == predicted).all(axis=1).mean()) if len(gold) else 0.0
    return scores


def entity_spans(labels: np.ndarray | Sequence[int]) -> set[tuple[int, int, int]]:
    """(first position, end position, type) of each entity in one BIO id sequence, read as conlleval
    (the CoNLL-2000 script) reads it.

    An entity starts at B-t, or at an I-t whose previous position is not of type t (O, another type,
    or the start), and runs over the I-t that follow; O, a B of any type and another type end it.
    Negative ids ([CLS], [SEP] and padding, as the PHI tagger passes them) end an entity and belong to
    none; `entity_scores` removes the unscored positions before reading, so there they never occur.
    """
    spans = set()
    start, kind = None, None
    for position, label in enumerate([*list(labels), OUTSIDE]):
        label = int(label)
        label_kind = (label - 1) // 2 if label > 0 else None
        continues = label > 0 and label % 2 == 0 and label_kind == kind and start is not None
        if start is not None and not continues:
            spans.add((start, position, kind))
            start, kind = None, None
        if label > 0 and not continues:
            start, kind = position, label_kind
    return spans


def entity_counts(gold: Sequence, predicted: Sequence) -> dict[int, list[int]]:
    """{type id: [true positives, gold entities, predicted entities]} over parallel lists of BIO id
    sequences. Positions where gold is negative (-100: the pieces of a word after its first, special
    tokens, padding) are removed from both before entities are read, so an entity is a run of words:
    an unscored piece inside a word does not break it."""
    counts: dict[int, list[int]] = {}
    for gold_row, predicted_row in zip(gold, predicted, strict=True):
        gold_row = np.asarray(gold_row)
        scored = gold_row >= 0
        gold_spans = entity_spans(gold_row[scored])
        predicted_spans = entity_spans(np.asarray(predicted_row)[: len(gold_row)][scored])
        for column, spans in enumerate((gold_spans & predicted_spans, gold_spans, predicted_spans)):
            for _, _, kind in spans:
                counts.setdefault(kind, [0, 0, 0])[column] += 1
    return counts


def entity_row_counts(gold: Sequence, predicted: Sequence, num_types: int = 0) -> np.ndarray:
    """`entity_counts` of each row on its own: [rows, 3, types] (true positives, gold entities,
    predicted entities per type), at least `num_types` wide. Micro entity scores are ratios of sums
    over rows, so a bootstrap over rows resamples these."""
    per_row = [
        entity_counts([gold_row], [predicted_row])
        for gold_row, predicted_row in zip(gold, predicted, strict=True)
    ]
    width = max([num_types, *(kind + 1 for row in per_row for kind in row)])
    counts = np.zeros((len(per_row), 3, width))
    for row, found in enumerate(per_row):
        for kind, row_counts in found.items():
            counts[row, :, kind] = row_counts
    return counts


def entity_scores(gold: Sequence, predicted: Sequence) -> dict[str, Any]:
    """Entity-level precision, recall and F1 (exact type and boundaries), micro over all sequences and
    per type, with the counts they come from (see `entity_counts` for the inputs).

    Returns precision, recall, f1, true_positives, gold, predicted, and `by_type`:
    {type id: the same six} for every type that occurs in the gold or the predicted entities.
    """
    counts = entity_counts(gold, predicted)
    totals = [sum(row[column] for row in counts.values()) for column in range(3)]
    by_type = {kind: _with_counts(*counts[kind]) for kind in sorted(counts)}
    return {**_with_counts(*totals), "by_type": by_type}


def _with_counts(true_positives: int, gold: int, predicted: int) -> dict[str, float]:
    return {
        **precision_recall_f1(true_positives, gold, predicted),
        "true_positives": true_positives,
        "gold": gold,
        "predicted": predicted,
    }


def bootstrap(
    units: int,
    statistic: Callable[[np.ndarray], Any],
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A percentile bootstrap interval: `statistic(indices)` recomputed on `samples` resamples, with
    replacement, of the `units` rows of a split (notes, sentences, pairs), which the metric treats as
    independent. Returns (low, high): floats for a statistic that returns one figure, arrays for one
    that returns a vector of figures (each figure's own interval, over the same resamples); NaN for
    an empty split."""
    if units == 0:
        width = np.shape(statistic(np.zeros(0, dtype=np.int64)))
        return (float("nan"),) * 2 if width == () else (np.full(width, np.nan), np.full(width, np.nan))
    generator = np.random.default_rng(seed)
    values = np.array([statistic(generator.integers(0, units, units)) for _ in range(samples)], dtype=float)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(values, [tail, 1.0 - tail], axis=0)
    return (float(low), float(high)) if values.ndim == 1 else (low, high)
