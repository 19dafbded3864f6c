"""Multi-class metrics for the Evaluator that TFMA does not compute from argmax predictions.

TFMA's binarized Precision/Recall/F1 threshold each class's probability at 0.5, which a 40-way
softmax rarely crosses, and its macro average turns NaN as soon as one class has no predictions. The
metric here takes the predicted class as the argmax, as a clinician reading the model's answer
would, and reports:

    macro_f1             mean F1 over the classes that occur in the labels or the predictions
    f1 (per class)       sub_key class_id=i: F1 of class i (0 when it has no predictions)
    precision, recall    per class, same sub keys; 0 where undefined

Used in the EvalConfig as `tfma.MetricConfig(class_name="MacroF1", module="components.eval_metrics")`.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

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


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(precision, recall, f1) per class and the macro F1 over classes seen, from a confusion matrix
    indexed [true class, predicted class]."""
    true_positive = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(true_positive), where=total > 0)
    seen = (predicted > 0) | (actual > 0)
    macro = float(f1[seen].mean()) if seen.any() else 0.0
    return precision, recall, f1, macro


def _own_inputs(element: metric_types.StandardMetricInputs, model_name: str):
    """(label, prediction) of one model: with a baseline, inputs come keyed by model name
    ("candidate", "baseline")."""
    label, prediction = element.label, element.prediction
    if isinstance(label, dict):
        label = label[model_name]
    if isinstance(prediction, dict):
        prediction = prediction[model_name]
    return label, prediction


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
                key = metric_types.MetricKey(
                    name=name,
                    model_name=self._key.model_name,
                    output_name=self._key.output_name,
                    sub_key=metric_types.SubKey(class_id=class_id),
                )
                output[key] = float(values[class_id])
        return output


ENTITY_F1 = "entity_f1"


class EntityF1(metric_types.Metric):
    """Token classification: entity-level F1, precision and recall (exact span and type), micro over
    the eval set, and the accuracy of the labelled tokens. Labels are BIO ids per packed position
    (-100 where none applies); predictions are per-position label probabilities, read as argmax.

    Keys: entity_f1, entity_precision, entity_recall, token_accuracy.
    """

    def __init__(self, name: str = ENTITY_F1):
        super().__init__(_entity_computations, name=name)


metric_types.register_metric(EntityF1)


def _entity_computations(name: str = ENTITY_F1, model_names=None, output_names=None, **unused):
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
                    combiner=_EntityCombiner(keys, name, model_name),
                )
            )
    return computations


class _EntityCombiner(beam.CombineFn):
    """Accumulates (true positives, gold entities, predicted entities, tokens right, tokens labelled)."""

    def __init__(self, keys: dict, name: str, model_name: str):
        self._keys = keys
        self._name = name
        self._model_name = model_name

    def create_accumulator(self) -> list[float]:
        return [0.0, 0.0, 0.0, 0.0, 0.0]

    def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
        from components.sentencepiece_tokenizer.token_labels import entity_scores

        label, prediction = _own_inputs(element, self._model_name)
        gold = np.asarray(label).reshape(-1).astype(np.int64)
        predicted = np.argmax(np.asarray(prediction).reshape(len(gold), -1), axis=-1)
        scores = entity_scores([gold], [predicted])
        labelled = gold >= 0
        counts = (
            scores["true_positives"],
            scores["gold"],
            scores["predicted"],
            (predicted == gold)[labelled].sum(),
            labelled.sum(),
        )
        return [total + float(count) for total, count in zip(accumulator, counts, strict=True)]

    def merge_accumulators(self, accumulators):
        return [sum(values) for values in zip(*accumulators, strict=True)]

    def extract_output(self, accumulator):
        from components.sentencepiece_tokenizer.token_labels import precision_recall_f1

        true_positives, gold, predicted, right, labelled = accumulator
        scores = precision_recall_f1(true_positives, gold, predicted)
        return {
            self._keys[self._name]: scores["f1"],
            self._keys["entity_precision"]: scores["precision"],
            self._keys["entity_recall"]: scores["recall"],
            self._keys["token_accuracy"]: right / labelled if labelled else 0.0,
        }
