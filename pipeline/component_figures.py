"""Each component's figure on the console: what a person checks first when it ends (records kept and
rejected, vocabulary size and <unk> rate, steps and loss, the blessing and its metric, the pushed
version, where the model card is), read from the execution's output artifacts as ML Metadata records
them (protos, with `uri` and `custom_properties`). Each figure function takes {output key: artifacts}
and the Evaluator's headline metric, and returns "" when the artifact holds no figure (an older
component, a key not written yet).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from components.clinical_example_gen import report as ingest_report

# The output keys the figures are read from (each component's spec names them).
REPORT_KEY = "report"  # ClinicalExampleGen: the IngestReport
TOKENIZER_KEY = "tokenizer"  # SentencePieceTokenizer
MODEL_RUN_KEY = "model_run"  # Trainers
EVALUATION_KEY, BLESSING_KEY = "evaluation", "blessing"  # Evaluator
PUSHED_MODEL_KEY = "pushed_model"  # Pusher
MODEL_CARD_KEY = "model_card"  # ModelCard
TRAINING_FILE = "training.json"  # in the ModelRun folder (components/trainer/finetune.py)
EXAMPLES_KEY = "examples"  # PretrainingExamples
INSTANCES_PREFIX = "instances_"  # its custom properties (components/pretraining_examples/executor.py)
CARD_FILE = "model_card.md"  # in the ModelCard folder (components/model_card/card.py)


def property_value(artifact, name: str) -> Any | None:
    """An ML Metadata artifact's custom property as a Python value, None when absent."""
    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _read_json(path: str) -> Any | None:
    """A JSON file's content; None when there is no such file (a figure then is left out)."""
    if "://" in path:
        from tfx.dsl.io import fileio

        if not fileio.exists(path):
            return None
        with fileio.open(path, "r") as f:
            return json.loads(f.read())
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _first(outputs: Mapping[str, Sequence[Any]], key: str):
    artifacts = outputs.get(key) or ()
    return artifacts[0] if artifacts else None


def _number(value: float) -> str:
    return f"{value:.3g}"


def ingest_figure(outputs: Mapping[str, Sequence[Any]], main_metric: str | None = None) -> str:
    """`412 kept, 3 rejected (empty_text 2, too_long 1); span 3` from the IngestReport's summary.json."""
    report = _first(outputs, REPORT_KEY)
    summary = _read_json(os.path.join(report.uri, ingest_report.SUMMARY_FILE)) if report else None
    if not summary:
        return ""
    reasons = dict(summary.get("rejected_by_reason") or {})
    reasons.update(
        {
            key[len(ingest_report.REJECTED_PREFIX) :]: value
            for key, value in summary.items()
            if key.startswith(ingest_report.REJECTED_PREFIX)
        }
    )
    rejected = summary.get(ingest_report.REJECTED, sum(reasons.values()))
    text = f"{summary.get(ingest_report.KEPT_EXAMPLES, 0)} kept, {rejected} rejected"
    if reasons:
        text += " (" + ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items())) + ")"
    spans = [s for s in summary.get("spans") or () if isinstance(s, Mapping) and "span" in s]
    if spans:
        names = [
            f"{s['span']}" + (f" version {s['version']}" if s.get("version") is not None else "")
            for s in spans
        ]
        text += f"; span{'s' if len(spans) > 1 else ''} " + ", ".join(names)
    return text


def pretraining_examples_figure(outputs: Mapping[str, Sequence[Any]], main_metric: str | None = None) -> str:
    """`1,204 train instances, 150 eval` from the PretrainingExamples artifact's properties."""
    examples = _first(outputs, EXAMPLES_KEY)
    if examples is None:
        return ""
    counts = [
        (split, property_value(examples, INSTANCES_PREFIX + split)) for split in ("train", "eval", "test")
    ]
    parts = [f"{count:,} {split}" for split, count in counts if count is not None]
    if not parts:
        return ""
    return ", ".join([parts[0] + " instances", *parts[1:]])


def tokenizer_figure(outputs: Mapping[str, Sequence[Any]], main_metric: str | None = None) -> str:
    """`vocabulary 2000, <unk> 0.0048%, 1.73 pieces/word; trained` from the tokenizer's properties."""
    tokenizer = _first(outputs, TOKENIZER_KEY)
    if tokenizer is None:
        return ""
    parts = []
    if (size := property_value(tokenizer, "vocab_size")) is not None:
        parts.append(f"vocabulary {size}")
    if (unk := property_value(tokenizer, "unk_rate")) is not None:
        parts.append(f"<unk> {_number(100 * unk)}%")
    if (pieces := property_value(tokenizer, "pieces_per_word")) is not None:
        parts.append(f"{_number(pieces)} pieces/word")
    text = ", ".join(parts)
    reused = property_value(tokenizer, "reused")
    if reused is not None:
        text += ("; " if text else "") + ("reused vocabulary" if reused else "trained")
    drift = _json_property(tokenizer, "drift")
    if drift:
        # The new data against the vocabulary's own figures, as the AnomalyGate checks them.
        text += (
            f" (<unk> {100 * drift['unk_rate_increase']:+.4f} points, pieces/word "
            f"x{drift['pieces_per_word_ratio']:.3f} since trained)"
        )
    return text


def _json_property(artifact, name: str) -> dict | None:
    value = property_value(artifact, name)
    if not value:
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def trainer_figure(outputs: Mapping[str, Sequence[Any]], main_metric: str | None = None) -> str:
    """`30 steps, final loss 2.31, best micro_f1 0.412 at step 20; <start> (<backend>)` from
    training.json (pretraining adds its eval split's MLM accuracy)."""
    run = _first(outputs, MODEL_RUN_KEY)
    training = _read_json(os.path.join(run.uri, TRAINING_FILE)) if run else None
    if not isinstance(training, Mapping):
        return ""
    parts = []
    if (steps := training.get("steps_trained")) is not None:
        parts.append(f"{steps} steps")
    loss = training.get("final_loss")
    evals = [e for e in training.get("evals") or () if isinstance(e, Mapping)]
    if loss is None and evals:
        loss = evals[-1].get("loss")
    if loss is not None:
        parts.append(f"final loss {_number(loss)}")
    if training.get("best") is not None:
        best = f"best {training.get('metric') or 'metric'} {_number(training['best'])}"
        if training.get("best_step") is not None:
            best += f" at step {training['best_step']}"
        parts.append(best)
    if training.get("eval_mlm_accuracy") is not None:
        parts.append(f"eval MLM accuracy {_number(training['eval_mlm_accuracy'])}")
    text = ", ".join(parts)
    if training.get("start"):
        text += ("; " if text else "") + str(training["start"])
    if training.get("backend"):
        text += f" ({training['backend']})"
    return text


def overall_metric(evaluation_uri: str, name: str) -> float | None:
    """The candidate model's `name` over the whole eval split, from the Evaluator's evaluation."""
    import tensorflow_model_analysis as tfma

    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys or slice_metrics.HasField("cross_slice_key"):
            continue
        for metric in slice_metrics.metric_keys_and_values:
            key = metric.key
            if (
                key.name == name
                and key.model_name in ("", "candidate")
                and not key.is_diff
                and not key.HasField("sub_key")
                and metric.value.WhichOneof("type") == "double_value"
            ):
                return metric.value.double_value.value
    return None


def evaluator_figure(outputs: Mapping[str, Sequence[Any]], main_metric: str | None = None) -> str:
    """`blessed, micro_f1 0.412` (or `not blessed, ...`) from the blessing and the evaluation."""
    blessing = _first(outputs, BLESSING_KEY)
    parts = []
    if blessing is not None and (blessed := property_value(blessing, "blessed")) is not None:
        parts.append("blessed" if blessed else "not blessed")
    evaluation = _first(outputs, EVALUATION_KEY)
    if main_metric and evaluation is not None:
        value = overall_metric(evaluation.uri, main_metric)
        if value is not None:
            parts.append(f"{main_metric} {_number(value)}")
    return ", ".join(parts)


def pusher_figure(outputs: Mapping[str, Sequence[Any]], main_metric: str | None = None) -> str:
    """`pushed version 3` or `not pushed`."""
    pushed = _first(outputs, PUSHED_MODEL_KEY)
    if pushed is None:
        return ""
    if not property_value(pushed, "pushed"):
        return "not pushed"
    version = property_value(pushed, "pushed_version")
    return f"pushed version {version}" if version else "pushed"


def model_card_figure(outputs: Mapping[str, Sequence[Any]], main_metric: str | None = None) -> str:
    """Where the card is: its artifact folder."""
    card = _first(outputs, MODEL_CARD_KEY)
    return f"card in {card.uri}" if card is not None else ""


#: The node ids whose end line has a figure, and how it is read from the execution's outputs.
FIGURES: dict[str, Callable[[Mapping[str, Sequence[Any]], str | None], str]] = {
    "ClinicalExampleGen": ingest_figure,
    "SentencePieceTokenizer": tokenizer_figure,
    "PretrainingExamples": pretraining_examples_figure,
    "pretrain": trainer_figure,
    "finetune": trainer_figure,
    "Evaluator": evaluator_figure,
    "Pusher": pusher_figure,
    "ModelCard": model_card_figure,
}


def headline_metric(eval_config) -> str | None:
    """The metric the Evaluator blesses on: the first one with a threshold in the EvalConfig, by the
    name its values carry (the `name` in its config, else its class name in snake case, as Keras and
    TFMA name metrics: SparseCategoricalAccuracy -> sparse_categorical_accuracy)."""
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            if metric.HasField("threshold"):
                options = json.loads(metric.config) if metric.config else {}
                return options.get("name") or re.sub(r"(?<!^)(?=[A-Z])", "_", metric.class_name).lower()
    return None
