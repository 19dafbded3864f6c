"""The Evaluator's own figures and verdict, read from its artifacts into plain dicts for the card.

`read_metrics` reads the evaluation (TFMA's `metrics` records): the candidate's figures over the whole
eval split, per class (sub key class_id) and per single-feature slice, and the baseline's overall
figures when there was one (with a baseline, TFMA names each figure's model "candidate" or
"baseline"; without, ""). Differences against the baseline are left out. `read_validation` reads the
validation result: whether every threshold held, and each one that failed.
"""

from __future__ import annotations

from typing import Any

from components.model_card.figures import slice_value

CANDIDATE_MODELS = ("", "candidate")
BASELINE_MODEL = "baseline"


def _slice_name(single_slice_keys) -> tuple[str, str] | None:
    """(column, value) of a one-feature slice; None for the whole split."""
    if not single_slice_keys:
        return None
    key = single_slice_keys[0]
    return key.column, slice_value(getattr(key, key.WhichOneof("kind")))


def read_metrics(uri: str) -> dict[str, Any]:
    """{"overall": {name: value}, "per_class": {name: {class_id: value}},
    "slices": {column: {value: {name: value}}}, "baseline": {name: value}}."""
    import tensorflow_model_analysis as tfma

    found: dict[str, Any] = {"overall": {}, "per_class": {}, "slices": {}, "baseline": {}}
    for slice_metrics in tfma.load_metrics(uri):
        keys = slice_metrics.slice_key.single_slice_keys
        if slice_metrics.HasField("cross_slice_key") or len(keys) > 1:
            continue
        where = _slice_name(keys)
        for metric in slice_metrics.metric_keys_and_values:
            key, value = metric.key, metric.value
            if key.is_diff or value.WhichOneof("type") != "double_value":
                continue
            figure = value.double_value.value
            class_id = key.sub_key.class_id.value if key.HasField("sub_key") else None
            if key.model_name == BASELINE_MODEL:
                if where is None and class_id is None:
                    found["baseline"][key.name] = figure
            elif key.model_name not in CANDIDATE_MODELS or key.output_name:
                continue
            elif where is not None:
                if class_id is None:
                    column, name = where
                    found["slices"].setdefault(column, {}).setdefault(name, {})[key.name] = figure
            elif class_id is not None:
                found["per_class"].setdefault(key.name, {})[class_id] = figure
            else:
                found["overall"][key.name] = figure
    return found


def _bounds(threshold) -> str:
    """A TFMA MetricThreshold in words: `value >= 0.5`, `change vs baseline >= -0.01`."""
    from tensorflow_model_analysis.proto import config_pb2

    parts = []
    if threshold.HasField("value_threshold"):
        bounds = threshold.value_threshold
        if bounds.HasField("lower_bound"):
            parts.append(f"value >= {bounds.lower_bound.value:g}")
        if bounds.HasField("upper_bound"):
            parts.append(f"value <= {bounds.upper_bound.value:g}")
    if threshold.HasField("change_threshold"):
        change = threshold.change_threshold
        higher = change.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER
        if change.HasField("absolute"):
            parts.append(f"change vs baseline {'>=' if higher else '<='} {change.absolute.value:g}")
        if change.HasField("relative"):
            parts.append(f"relative change vs baseline {'>=' if higher else '<='} {change.relative.value:g}")
    return "; ".join(parts)


def read_validation(uri: str) -> dict[str, Any]:
    """{"ok": every threshold held, "rubber_stamp": no baseline to compare with (change thresholds not
    applied), "failures": [{"metric", "slice", "value", "threshold", "message"}], "missing_slices"}."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(uri)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        where = _slice_name(per_slice.slice_key.single_slice_keys)
        for failure in per_slice.failures:
            key = failure.metric_key
            name = key.name + (f" (class {key.sub_key.class_id.value})" if key.HasField("sub_key") else "")
            value = failure.metric_value
            failures.append(
                {
                    "metric": name + (" change vs baseline" if key.is_diff else ""),
                    "slice": "overall" if where is None else f"{where[0]}={where[1]}",
                    "value": value.double_value.value if value.WhichOneof("type") == "double_value" else None,
                    "threshold": _bounds(failure.metric_threshold),
                    "message": failure.message,
                }
            )
    missing = [
        "overall" if not spec.feature_keys else ",".join(spec.feature_keys) for spec in result.missing_slices
    ]
    return {
        "ok": bool(result.validation_ok),
        "rubber_stamp": bool(result.rubber_stamp),
        "failures": failures,
        "missing_slices": missing,
    }
