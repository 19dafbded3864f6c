"""Metrics for the Evaluator that TFMA does not compute the way the tasks need them.

TFMA's binarized Precision/Recall/F1 threshold each class's probability at 0.5, which a 40-way
softmax rarely crosses, and its macro average turns NaN as soon as one class has no predictions. Each
metric here accumulates counts (never predictions), so that its combiner merges in any order:

MacroF1, single-label classification; the predicted class is the argmax, as a clinician reading the
model's answer would take it:
    macro_f1             mean F1 over the classes that occur in the labels or the predictions
    f1 (per class)       sub_key class_id=i: F1 of class i (0 when it has no predictions)
    precision, recall    per class, same sub keys; 0 where undefined

MultiLabelF1, multi-label classification; a label is predicted where its decision score is >= 0.5:
    micro_f1, micro_precision, micro_recall     over every (note, label) pair
    multi_label_macro_f1                        mean F1 over the labels that occur, as macro_f1
    subset_accuracy                             notes whose predicted label set is exactly right
    f1, precision, recall (per label)           sub_key class_id=i; 0 where undefined

EntityF1, token classification: entity_f1, entity_precision, entity_recall (conlleval, on words),
token_accuracy, and the first three per entity type (sub_key class_id=type id).

Used in the EvalConfig as `tfma.MetricConfig(class_name="MacroF1", module="components.eval_metrics")`,
with `config=json.dumps({"num_classes": n})` to report classes that never occur.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

from components.scores import macro_over_seen, per_class_scores, precision_recall_f1, rates

__all__ = ["EntityF1", "MacroF1", "MultiLabelF1", "per_class_scores"]

MACRO_F1 = "macro_f1"


class MacroF1(metric_types.Metric):
    def __init__(self, name: str = MACRO_F1, num_classes: int = 0):
        super().__init__(_computations, name=name, num_classes=num_classes)


metric_types.register_metric(MacroF1)


def _computations(
    name: str = MACRO_F1, num_classes: int = 0, model_names=None, output_names=None, **unused
) -> metric_types.MetricComputations:
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name)
            computations.append(
                metric_types.MetricComputation(
                    keys=[key],
                    preprocessors=[metric_types.StandardMetricInputsPreprocessor()],
                    combiner=_ConfusionCombiner(key, num_classes),
                )
            )
    return computations


def _own_inputs(element: metric_types.StandardMetricInputs, model_name: str):
    """(label, prediction) of one model: with a baseline, inputs come keyed by model name
    ("candidate", "baseline")."""
    label, prediction = element.label, element.prediction
    if isinstance(label, dict):
        label = label[model_name]
    if isinstance(prediction, dict):
        prediction = prediction[model_name]
    return label, prediction


def _class_key(name: str, key: metric_types.MetricKey, class_id: int) -> metric_types.MetricKey:
    """`key`'s model and output, under another name, for one class (label, entity type)."""
    return metric_types.MetricKey(
        name=name,
        model_name=key.model_name,
        output_name=key.output_name,
        sub_key=metric_types.SubKey(class_id=class_id),
    )


class _ConfusionCombiner(beam.CombineFn):
    def __init__(self, key: metric_types.MetricKey, num_classes: int):
        self._key = key
        self._num_classes = num_classes

    def create_accumulator(self) -> dict[tuple[int, int], float]:
        return {}

    def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
        label, prediction = _own_inputs(element, self._key.model_name)
        label = int(np.asarray(label).reshape(-1)[0])
        if label < 0:  # a note without a configured class is not scored
            return accumulator
        predicted = int(np.argmax(np.asarray(prediction).reshape(-1)))
        accumulator[(label, predicted)] = accumulator.get((label, predicted), 0.0) + 1.0
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: dict[tuple[int, int], float] = {}
        for accumulator in accumulators:
            for cell, count in accumulator.items():
                merged[cell] = merged.get(cell, 0.0) + count
        return merged

    def extract_output(self, accumulator):
        size = max([self._num_classes, *(max(cell) + 1 for cell in accumulator)])
        confusion = np.zeros((size, size))
        for (true, predicted), count in accumulator.items():
            confusion[true, predicted] = count
        precision, recall, f1, macro = per_class_scores(confusion)
        output = {self._key: macro}
        for class_id in range(size):
            for name, values in (("f1", f1), ("precision", precision), ("recall", recall)):
                output[_class_key(name, self._key, class_id)] = float(values[class_id])
        return output


MICRO_F1 = "micro_f1"
#: The decision score at and above which a label is predicted: the model folds each label's own
#: threshold into its scores (components/thresholds.py), so 0.5 is every label's threshold.
DECISION_THRESHOLD = 0.5
MULTI_LABEL_MACRO_F1 = "multi_label_macro_f1"
_MULTI_LABEL_KEYS = (MICRO_F1, "micro_precision", "micro_recall", MULTI_LABEL_MACRO_F1, "subset_accuracy")


class MultiLabelF1(metric_types.Metric):
    """Multi-label classification. Labels are multi-hot `[num_labels]` (all 0 for a note with none);
    predictions are per-label decision scores in [0, 1], a label predicted where its score >= 0.5.

    Keys: micro_f1, micro_precision, micro_recall, multi_label_macro_f1, subset_accuracy, and per
    label (sub_key class_id=i) f1, precision, recall; 0 where undefined. `name` picks which of the
    first five is the metric's own key, the one a MetricConfig threshold (the blessing) applies to:
    micro_f1 by default, multi_label_macro_f1 to bless on the macro average. The macro F1 averages the
    labels that occur in the gold labels or in the predictions of the evaluated set (the rule of
    MacroF1), so a slice without some rare label is not dragged down by it. `num_classes` reports the
    labels that never occur too.
    """

    def __init__(self, name: str = MICRO_F1, num_classes: int = 0):
        super().__init__(_multi_label_computations, name=name, num_classes=num_classes)


metric_types.register_metric(MultiLabelF1)


def _multi_label_computations(
    name: str = MICRO_F1, num_classes: int = 0, model_names=None, output_names=None, **unused
) -> metric_types.MetricComputations:
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            if name not in _MULTI_LABEL_KEYS:
                raise ValueError(f"MultiLabelF1 name must be one of {_MULTI_LABEL_KEYS}, got {name!r}")
            keys = {
                metric: metric_types.MetricKey(name=metric, model_name=model_name, output_name=output_name)
                for metric in (name, *(key for key in _MULTI_LABEL_KEYS if key != name))
            }
            computations.append(
                metric_types.MetricComputation(
                    keys=list(keys.values()),
                    preprocessors=[metric_types.StandardMetricInputsPreprocessor()],
                    combiner=_MultiLabelCombiner(keys, name, model_name, num_classes),
                )
            )
    return computations


def _grown(counts: np.ndarray, size: int) -> np.ndarray:
    return np.pad(counts, (0, size - len(counts))) if len(counts) < size else counts


class _MultiLabelCombiner(beam.CombineFn):
    """Accumulates, per label, true positives, false positives and false negatives (arrays that grow
    to the widest label vector seen), and the counts of notes and of exactly right notes."""

    _COUNTS = ("true_positives", "false_positives", "false_negatives")

    def __init__(self, keys: dict, name: str, model_name: str, num_classes: int):
        self._keys = keys
        self._name = name
        self._model_name = model_name
        self._num_classes = num_classes

    def create_accumulator(self) -> dict[str, Any]:
        return {**{count: np.zeros(self._num_classes) for count in self._COUNTS}, "notes": 0.0, "exact": 0.0}

    def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
        label, prediction = _own_inputs(element, self._model_name)
        gold = np.asarray(label).reshape(-1) > 0
        predicted = np.asarray(prediction).reshape(-1) >= DECISION_THRESHOLD
        if gold.shape != predicted.shape:
            raise ValueError(
                f"MultiLabelF1 needs one decision score per label: got {predicted.size} scores for "
                f"{gold.size} labels"
            )
        size = max(len(accumulator["true_positives"]), gold.size)
        return {
            "true_positives": _grown(accumulator["true_positives"], size) + _grown(gold & predicted, size),
            "false_positives": _grown(accumulator["false_positives"], size) + _grown(~gold & predicted, size),
            "false_negatives": _grown(accumulator["false_negatives"], size) + _grown(gold & ~predicted, size),
            "notes": accumulator["notes"] + 1.0,
            "exact": accumulator["exact"] + float(np.array_equal(gold, predicted)),
        }

    def merge_accumulators(self, accumulators):
        accumulators = list(accumulators)
        size = max((len(accumulator["true_positives"]) for accumulator in accumulators), default=0)
        merged = {count: np.zeros(size) for count in self._COUNTS}
        merged.update(notes=0.0, exact=0.0)
        for accumulator in accumulators:
            for count in self._COUNTS:
                merged[count] += _grown(accumulator[count], size)
            merged["notes"] += accumulator["notes"]
            merged["exact"] += accumulator["exact"]
        return merged

    def extract_output(self, accumulator):
        size = max(self._num_classes, len(accumulator["true_positives"]))
        true_positives, false_positives, false_negatives = (
            _grown(accumulator[count], size) for count in self._COUNTS
        )
        predicted, actual = true_positives + false_positives, true_positives + false_negatives
        precision, recall, f1 = rates(true_positives, predicted, actual)
        micro_precision, micro_recall, micro_f1 = (
            float(value[0]) for value in rates([true_positives.sum()], [predicted.sum()], [actual.sum()])
        )
        notes = accumulator["notes"]
        output = {
            self._keys[MICRO_F1]: micro_f1,
            self._keys["micro_precision"]: micro_precision,
            self._keys["micro_recall"]: micro_recall,
            self._keys[MULTI_LABEL_MACRO_F1]: macro_over_seen(f1, predicted, actual),
            self._keys["subset_accuracy"]: accumulator["exact"] / notes if notes else 0.0,
        }
        key = self._keys[MICRO_F1]
        for class_id in range(size):
            for name, values in (("f1", f1), ("precision", precision), ("recall", recall)):
                output[_class_key(name, key, class_id)] = float(values[class_id])
        return output


ENTITY_F1 = "entity_f1"


class EntityF1(metric_types.Metric):
    """Token classification: entity-level F1, precision and recall (exact type and boundaries, entities
    read as conlleval reads them), micro over the eval set and per entity type, and the accuracy of the
    labelled positions. Labels are BIO ids per packed position, -100 where none applies (every piece of
    a word but its first, special tokens, padding); predictions are per-position label probabilities,
    read as argmax. Unlabelled positions are dropped before entities are read, so entities are runs of
    words and token_accuracy is the accuracy over words (`token_labels.entity_scores`).

    Keys: entity_f1 (`name`), entity_precision, entity_recall, token_accuracy; and per type
    (sub_key class_id=type id) entity_f1, entity_precision, entity_recall, 0 where undefined.
    `num_types` reports types with no gold and no predicted entity too.
    """

    def __init__(self, name: str = ENTITY_F1, num_types: int = 0):
        super().__init__(_entity_computations, name=name, num_types=num_types)


metric_types.register_metric(EntityF1)


def _entity_computations(
    name: str = ENTITY_F1, num_types: int = 0, model_names=None, output_names=None, **unused
) -> metric_types.MetricComputations:
    computations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            keys = {
                metric: metric_types.MetricKey(name=metric, model_name=model_name, output_name=output_name)
                for metric in (name, "entity_precision", "entity_recall", "token_accuracy")
            }
            computations.append(
                metric_types.MetricComputation(
                    keys=list(keys.values()),
                    preprocessors=[metric_types.StandardMetricInputsPreprocessor()],
                    combiner=_EntityCombiner(keys, name, model_name, num_types),
                )
            )
    return computations


class _EntityCombiner(beam.CombineFn):
    """Accumulates {"types": {type id: [true positives, gold entities, predicted entities]},
    "words_right": float, "words": float}."""

    def __init__(self, keys: dict, name: str, model_name: str, num_types: int):
        self._keys = keys
        self._name = name
        self._model_name = model_name
        self._num_types = num_types

    def create_accumulator(self) -> dict[str, Any]:
        return {"types": {}, "words_right": 0.0, "words": 0.0}

    def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
        from components.scores import entity_scores

        label, prediction = _own_inputs(element, self._model_name)
        gold = np.asarray(label).reshape(-1).astype(np.int64)
        predicted = np.argmax(np.asarray(prediction).reshape(len(gold), -1), axis=-1)
        labelled = gold >= 0
        scores = entity_scores([gold], [predicted])
        counts = {
            kind: [float(found["true_positives"]), float(found["gold"]), float(found["predicted"])]
            for kind, found in scores["by_type"].items()
        }
        one_note = {
            "types": counts,
            "words_right": float((predicted == gold)[labelled].sum()),
            "words": float(labelled.sum()),
        }
        return self.merge_accumulators([accumulator, one_note])

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            for kind, counts in accumulator["types"].items():
                total = merged["types"].setdefault(kind, [0.0, 0.0, 0.0])
                merged["types"][kind] = [a + b for a, b in zip(total, counts, strict=True)]
            merged["words_right"] += accumulator["words_right"]
            merged["words"] += accumulator["words"]
        return merged

    def extract_output(self, accumulator):
        types = accumulator["types"]
        totals = [sum(counts[column] for counts in types.values()) for column in range(3)]
        scores = precision_recall_f1(*totals)
        words = accumulator["words"]
        output = {
            self._keys[self._name]: scores["f1"],
            self._keys["entity_precision"]: scores["precision"],
            self._keys["entity_recall"]: scores["recall"],
            self._keys["token_accuracy"]: accumulator["words_right"] / words if words else 0.0,
        }
        key = self._keys[self._name]
        for kind in sorted(set(range(self._num_types)) | set(types)):
            by_type = precision_recall_f1(*types.get(kind, (0.0, 0.0, 0.0)))
            for name, value in (
                (self._name, "f1"),
                ("entity_precision", "precision"),
                ("entity_recall", "recall"),
            ):
                output[_class_key(name, key, kind)] = by_type[value]
        return output
