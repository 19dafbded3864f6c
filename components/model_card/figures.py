"""The card's figures, from the fine-tuning Trainer's `eval_predictions.npz`: each task's metrics over
the eval split, per class (label, entity type) and per slice (note_type, length_bucket), each with a
percentile bootstrap interval, and the calibration of the model's probabilities.

Every metric is computed by `components/scores.py`, the code the Evaluator's metrics use, from counts
that add up over the split's units (notes; sentences or documents for entities): a confusion matrix
for single-label notes and pairs, per-label true positives, false positives and false negatives (and
exactly right notes) for multi-label notes, per-type conlleval entity counts (and words right) for
entities. A resample's figures are then the figures of its units' summed counts, which is what the
metric computes on the resampled notes, at the cost of a sum. The resamples are drawn as
`scores.bootstrap` draws them (it takes a statistic that returns every figure at once).

The arrays (see `load_predictions`), by task:
    note tasks    label_names [labels], probabilities [notes, labels] (softmax, or sigmoids for
                  multi-label), targets [notes] class ids (-1: no class) or [notes, labels] 0/1,
                  thresholds [labels] (multi-label), note_type [notes], length_bucket [notes]
    entities      label_names (BIO: "O", "B-T", "I-T", ...), gold and predicted word BIO ids, flat;
                  confidence (the predicted id's probability), flat; row_lengths [rows]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from components import scores

NOTE_TASK = "note_classification"
PAIR_TASK = "text_pair_classification"
MULTI_LABEL_TASK = "multi_label_classification"
TOKEN_TASK = "token_classification"
TASKS = (NOTE_TASK, PAIR_TASK, MULTI_LABEL_TASK, TOKEN_TASK)
#: The slice keys that note tasks' predictions carry, as the Evaluator slices.
SLICE_KEYS = ("note_type", "length_bucket")
#: What each task's overall figures are, the first being its headline unless training.json names one.
OVERALL_FIGURES = {
    NOTE_TASK: ("accuracy", "macro_f1"),
    PAIR_TASK: ("accuracy", "macro_f1"),
    MULTI_LABEL_TASK: (
        "micro_f1",
        "micro_precision",
        "micro_recall",
        "multi_label_macro_f1",
        "subset_accuracy",
    ),
    TOKEN_TASK: ("entity_f1", "entity_precision", "entity_recall", "token_accuracy"),
}
CLASS_FIGURES = ("precision", "recall", "f1")
_REQUIRED = {
    NOTE_TASK: ("label_names", "probabilities", "targets"),
    PAIR_TASK: ("label_names", "probabilities", "targets"),
    MULTI_LABEL_TASK: ("label_names", "probabilities", "targets", "thresholds"),
    TOKEN_TASK: ("label_names", "gold", "predicted", "confidence", "row_lengths"),
}
CALIBRATION_BINS = 10


def load_predictions(file) -> dict[str, np.ndarray]:
    """The arrays of an eval_predictions.npz (a path or an open binary file); no pickled objects."""
    with np.load(file, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def check_predictions(task: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Raises ValueError when the arrays miss one that `task` needs, or their lengths disagree."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, received {task!r}")
    missing = [name for name in _REQUIRED[task] if name not in arrays]
    if missing:
        raise ValueError(f"eval_predictions for {task} lacks {missing}; it holds {sorted(arrays)}")
    if task == TOKEN_TASK:
        lengths = {name: len(arrays[name]) for name in ("gold", "predicted", "confidence")}
        if len(set(lengths.values())) != 1 or int(np.sum(arrays["row_lengths"])) != lengths["gold"]:
            raise ValueError(f"eval_predictions: word arrays {lengths} and row_lengths do not agree")
        return
    notes = len(arrays["probabilities"])
    for name in ("targets", *(key for key in SLICE_KEYS if key in arrays)):
        if len(arrays[name]) != notes:
            raise ValueError(
                f"eval_predictions: {notes} rows of probabilities but {len(arrays[name])} of {name}"
            )


@dataclasses.dataclass(frozen=True)
class TaskCounts:
    """A task's additive counts: `total(indices)` sums the counts of the units at `indices` (repeats
    count again), and `figures(total)` computes the metrics from such a sum."""

    unit: str
    units: int
    class_names: tuple[str, ...]
    figure_names: tuple[str, ...]
    total: Callable[[np.ndarray], np.ndarray]
    figures: Callable[[np.ndarray], dict[str, Any]]


def _single_label(arrays: Mapping[str, np.ndarray]) -> TaskCounts:
    """Notes (or pairs) with one class: a resample's counts are its confusion matrix."""
    names = [str(name) for name in arrays["label_names"]]
    targets = np.asarray(arrays["targets"], dtype=np.int64).reshape(-1)
    predicted = np.asarray(arrays["probabilities"]).argmax(axis=1)
    size = max(len(names), int(targets.max(initial=-1)) + 1, int(predicted.max(initial=-1)) + 1)
    cells = np.where(targets >= 0, targets * size + predicted, -1)  # -1: no class, not scored

    def total(indices: np.ndarray) -> np.ndarray:
        chosen = cells[indices]
        return np.bincount(chosen[chosen >= 0], minlength=size * size).astype(float)

    def figures(counts: np.ndarray) -> dict[str, Any]:
        confusion = counts.reshape(size, size)
        precision, recall, f1, macro = scores.per_class_scores(confusion)
        scored = confusion.sum()
        return {
            "accuracy": float(np.trace(confusion) / scored) if scored else 0.0,
            "macro_f1": macro,
            "per_class": {"precision": precision, "recall": recall, "f1": f1},
            "support": confusion.sum(axis=1),
            "predicted": confusion.sum(axis=0),
        }

    class_names = tuple(names + [f"class {i}" for i in range(len(names), size)])
    return TaskCounts("notes", len(targets), class_names, OVERALL_FIGURES[NOTE_TASK], total, figures)


def _multi_label(arrays: Mapping[str, np.ndarray]) -> TaskCounts:
    """Notes with any number of labels, each predicted where its probability reaches its threshold:
    per note, each label's true positive, false positive and false negative, and whether the note's
    whole label set is right."""
    names = tuple(str(name) for name in arrays["label_names"])
    gold = np.asarray(arrays["targets"]) > 0
    predicted = np.asarray(arrays["probabilities"]) >= np.asarray(arrays["thresholds"])
    labels = gold.shape[1]
    per_note = np.concatenate(
        [
            gold & predicted,
            ~gold & predicted,
            gold & ~predicted,
            (gold == predicted).all(axis=1, keepdims=True),
        ],
        axis=1,
    ).astype(float)

    def total(indices: np.ndarray) -> np.ndarray:
        return np.append(per_note[indices].sum(axis=0), len(indices))

    def figures(counts: np.ndarray) -> dict[str, Any]:
        true_positives, false_positives, false_negatives = np.split(counts[: 3 * labels], 3)
        found = scores.multi_label_from_counts(true_positives, false_positives, false_negatives)
        notes, exact = counts[-1], counts[-2]
        return {
            **{name: found[name] for name in OVERALL_FIGURES[MULTI_LABEL_TASK][:-1]},
            "subset_accuracy": float(exact / notes) if notes else 0.0,
            "per_class": {name: np.asarray(found["per_label"][name]) for name in CLASS_FIGURES},
            "support": true_positives + false_negatives,
            "predicted": true_positives + false_positives,
        }

    return TaskCounts("notes", len(gold), names, OVERALL_FIGURES[MULTI_LABEL_TASK], total, figures)


def entity_types(label_names: list[str]) -> tuple[str, ...]:
    """The entity types of BIO label names ("O", "B-T", "I-T", ...), in type-id order."""
    return tuple(str(name)[2:] for name in label_names[1::2])


def token_rows(arrays: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The flat gold and predicted word ids cut into their rows (sentences or documents)."""
    cuts = np.cumsum(np.asarray(arrays["row_lengths"], dtype=np.int64))[:-1]
    return np.split(np.asarray(arrays["gold"]), cuts), np.split(np.asarray(arrays["predicted"]), cuts)


def _entities(arrays: Mapping[str, np.ndarray]) -> TaskCounts:
    """Entities on words: per row, each type's true positive, gold and predicted entities
    (`scores.entity_counts`, conlleval's reading), and its words right and words scored."""
    types = entity_types(list(arrays["label_names"]))
    gold_rows, predicted_rows = token_rows(arrays)
    entities = scores.entity_row_counts(gold_rows, predicted_rows, len(types))
    per_row = np.zeros((len(gold_rows), 3 * len(types) + 2))
    per_row[:, : 3 * len(types)] = entities.reshape(len(gold_rows), 3 * len(types))
    for row, (gold, predicted) in enumerate(zip(gold_rows, predicted_rows, strict=True)):
        scored = gold >= 0
        per_row[row, -2:] = ((predicted == gold) & scored).sum(), scored.sum()

    def total(indices: np.ndarray) -> np.ndarray:
        return per_row[indices].sum(axis=0)

    def figures(counts: np.ndarray) -> dict[str, Any]:
        true_positives, gold, predicted = np.split(counts[: 3 * len(types)], 3)
        overall = scores.precision_recall_f1(
            float(true_positives.sum()), float(gold.sum()), float(predicted.sum())
        )
        precision, recall, f1 = scores.rates(true_positives, predicted, gold)
        words_right, words = counts[-2:]
        return {
            "entity_f1": overall["f1"],
            "entity_precision": overall["precision"],
            "entity_recall": overall["recall"],
            "token_accuracy": float(words_right / words) if words else 0.0,
            "per_class": {"precision": precision, "recall": recall, "f1": f1},
            "support": gold,
            "predicted": predicted,
        }

    return TaskCounts("rows", len(gold_rows), types, OVERALL_FIGURES[TOKEN_TASK], total, figures)


def task_counts(task: str, arrays: Mapping[str, np.ndarray]) -> TaskCounts:
    check_predictions(task, arrays)
    if task == MULTI_LABEL_TASK:
        return _multi_label(arrays)
    if task == TOKEN_TASK:
        return _entities(arrays)
    return _single_label(arrays)


def _flat(found: Mapping[str, Any], names: tuple[str, ...], classes: bool) -> np.ndarray:
    overall = [found[name] for name in names]
    if not classes:
        return np.asarray(overall, dtype=float)
    return np.concatenate([overall, *(found["per_class"][name] for name in CLASS_FIGURES)]).astype(float)


def _interval(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": float(value), "low": float(low), "high": float(high)}


def _scored(
    counts: TaskCounts, members: np.ndarray, classes: bool, samples: int, confidence: float, seed: int
) -> dict[str, Any]:
    """The figures of the units `members`, each with its interval over resamples of those units."""
    found = counts.figures(counts.total(members))
    value = _flat(found, counts.figure_names, classes)
    low, high = scores.bootstrap(
        len(members),
        lambda draw: _flat(counts.figures(counts.total(members[draw])), counts.figure_names, classes),
        samples,
        confidence,
        seed,
    )
    named = len(counts.figure_names)
    result: dict[str, Any] = {
        "overall": {name: _interval(value[i], low[i], high[i]) for i, name in enumerate(counts.figure_names)}
    }
    if classes:
        width = len(counts.class_names)
        result["per_class"] = [
            {
                "name": name,
                "support": int(found["support"][k]),
                "predicted": int(found["predicted"][k]),
                **{
                    figure: _interval(*(a[named + f * width + k] for a in (value, low, high)))
                    for f, figure in enumerate(CLASS_FIGURES)
                },
            }
            for k, name in enumerate(counts.class_names)
        ]
    return result


def slice_value(value: Any) -> str:
    """A slice value as the card and the Evaluator's slice keys both name it."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def reliability(confidence: np.ndarray, outcome: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """A reliability table: the predictions put in `bins` equal bins of their probability, each bin's
    mean probability against how often it came true, and the expected calibration error (the mean
    gap, weighted by each bin's share of the predictions)."""
    confidence = np.clip(np.asarray(confidence, dtype=float).reshape(-1), 0.0, 1.0)
    outcome = np.asarray(outcome, dtype=float).reshape(-1)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)  # 1.0 falls in the last bin
    count = np.bincount(index, minlength=bins)
    mean_confidence = np.bincount(index, weights=confidence, minlength=bins)
    came_true = np.bincount(index, weights=outcome, minlength=bins)
    total = int(count.sum())
    ece = float(np.abs(came_true - mean_confidence).sum() / total) if total else float("nan")
    table = []
    for b in range(bins):
        n = int(count[b])
        table.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": n,
                "confidence": float(mean_confidence[b] / n) if n else None,
                "observed": float(came_true[b] / n) if n else None,
            }
        )
    return {"bins": table, "ece": ece, "predictions": total}


def calibration(task: str, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The reliability of what the model says: the predicted class's probability against being right
    (single-label, pairs), each label's probability against the label being there (multi-label), the
    predicted BIO id's probability against being right, on scored words (entities)."""
    if task == TOKEN_TASK:
        gold, predicted = np.asarray(arrays["gold"]), np.asarray(arrays["predicted"])
        scored = gold >= 0
        found = reliability(np.asarray(arrays["confidence"])[scored], (predicted == gold)[scored])
        return {**found, "of": "the probability of each word's predicted label"}
    probabilities = np.asarray(arrays["probabilities"], dtype=float)
    if task == MULTI_LABEL_TASK:
        found = reliability(probabilities, np.asarray(arrays["targets"]) > 0)
        return {**found, "of": "each label's probability, against the label being among the note's"}
    targets = np.asarray(arrays["targets"]).reshape(-1)
    labelled = targets >= 0
    chosen = probabilities[labelled].argmax(axis=1)
    found = reliability(probabilities[labelled].max(axis=1), chosen == targets[labelled])
    return {**found, "of": "the probability of the predicted class"}


def score(
    task: str,
    arrays: Mapping[str, np.ndarray],
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of the card from the eval predictions: overall and per class with intervals, per
    slice value (overall figures only), the calibration, the confusion matrix (single-label and pairs)
    and the note types seen."""
    counts = task_counts(task, arrays)
    everyone = np.arange(counts.units)
    result: dict[str, Any] = {
        "unit": "notes" if task != TOKEN_TASK else "rows",
        "units": counts.units,
        "figure_names": list(counts.figure_names),
        "bootstrap": {"samples": samples, "confidence": confidence, "seed": seed, "resampled": counts.unit},
        **_scored(counts, everyone, True, samples, confidence, seed),
        "slices": {},
        "calibration": calibration(task, arrays),
    }
    for key in SLICE_KEYS:
        if key not in arrays or task == TOKEN_TASK:
            continue
        values = np.array([slice_value(v) for v in arrays[key]])
        result["slices"][key] = [
            {
                "value": value,
                "units": int((values == value).sum()),
                **_scored(counts, np.flatnonzero(values == value), False, samples, confidence, seed),
            }
            for value in sorted(set(values.tolist()), key=_natural)
        ]
    if task in (NOTE_TASK, PAIR_TASK):
        size = len(counts.class_names)
        result["confusion_matrix"] = counts.total(everyone).reshape(size, size).astype(int).tolist()
    if "note_type" in arrays:
        kinds, seen = np.unique([slice_value(v) for v in arrays["note_type"]], return_counts=True)
        result["note_types"] = {str(k): int(n) for k, n in zip(kinds, seen, strict=True)}
    return result


def _natural(value: str) -> tuple:
    """Numbers in numeric order (length buckets), before words in alphabetical order."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
