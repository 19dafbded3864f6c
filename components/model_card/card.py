"""The model card: what a fine-tuned model was trained on, how it scores on the eval split (with
bootstrap intervals, beside the Evaluator's own figures), whether it was blessed and against which
baseline, and what it is for and not for. `build_card` collects the fields into one JSON-able dict
(`model_card.json`); `render_markdown` writes that dict as a page to read (`model_card.md`), with the
report's plots (`report.py`) beside it.

The card holds counts, figures, names of labels and note types, and artifact locations; never note
text (the ingest report it quotes holds counts only).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tfx.dsl.io import fileio

from components.model_card import figures as figures_lib
from components.model_card.figures import MULTI_LABEL_TASK, NOTE_TASK, PAIR_TASK, TOKEN_TASK

CARD_FILE = "model_card.json"
MARKDOWN_FILE = "model_card.md"
REPORT_DIR = "report"
CARD_VERSION = 1
NO_BASELINE = "none: first model"
#: An eval split smaller than this many units is called small in the limitations.
SMALL_SPLIT = 500
#: An expected calibration error above this is called poor in the limitations.
POOR_CALIBRATION = 0.1
#: The card's figures and the Evaluator's are expected to agree within this (same split, same rules).
AGREEMENT = 1e-6
#: A probability this close to its threshold may be decided either way by two float32 computations.
NUMERIC_TIE = 1e-6

#: The Evaluator's name of each overall figure (components/eval_metrics.py, pipeline.eval_config).
EVALUATOR_NAMES = {
    NOTE_TASK: {"accuracy": "sparse_categorical_accuracy", "macro_f1": "macro_f1"},
    PAIR_TASK: {"accuracy": "sparse_categorical_accuracy", "macro_f1": "macro_f1"},
    MULTI_LABEL_TASK: {name: name for name in figures_lib.OVERALL_FIGURES[MULTI_LABEL_TASK]},
    TOKEN_TASK: {name: name for name in figures_lib.OVERALL_FIGURES[TOKEN_TASK]},
}
#: The Evaluator's name of each per-class figure (sub key class_id).
EVALUATOR_CLASS_NAMES = {
    NOTE_TASK: {"precision": "precision", "recall": "recall", "f1": "f1"},
    PAIR_TASK: {"precision": "precision", "recall": "recall", "f1": "f1"},
    MULTI_LABEL_TASK: {"precision": "precision", "recall": "recall", "f1": "f1"},
    TOKEN_TASK: {"precision": "entity_precision", "recall": "entity_recall", "f1": "entity_f1"},
}
TASK_PHRASES = {
    NOTE_TASK: "assigning each English clinical note one class",
    PAIR_TASK: "classifying pairs of English texts (a question and a passage) into one class",
    MULTI_LABEL_TASK: "tagging each English clinical note with every label that applies",
    TOKEN_TASK: "finding and typing entity mentions in English clinical text",
}
CLASS_WORDS = {NOTE_TASK: "class", PAIR_TASK: "class", MULTI_LABEL_TASK: "label", TOKEN_TASK: "entity type"}
UNIT_WORDS = {"notes": "notes", "rows": "sentences or documents"}


@dataclasses.dataclass(frozen=True)
class CardInputs:
    """What the card is made from, read from the pipeline's artifacts (see executor.py).

    model: {"uri", "artifact_id", "sha256"} of the fine-tuned model; model_run_uri: its run folder.
    training, predictions, reading: training.json, eval_predictions.npz and reading.json of that run
        (None when the Trainer did not write one).
    fine_tuning, pretraining: the two Trainers' parameters ({"custom_config", "train_steps", ...});
        pretraining also {"uri", "artifact_id"} of its model.
    corpus: ExampleGen's parameters; ingest: its summary.json (None when absent); ingest_uri.
    tokenizer: the tokenizer's stats.json with its "uri".
    evaluator: `evaluation.read_metrics` with its "uri"; validation: `evaluation.read_validation`.
    blessing: {"uri", "blessed" (bool, None unknown), "baseline_uri", "baseline_id"} as the Evaluator
        recorded them; baseline: {"uri", "artifact_id"} of the resolver's model, None when none.
    """

    model: Mapping[str, Any]
    model_run_uri: str
    training: Mapping[str, Any] | None
    predictions: Mapping[str, np.ndarray] | None
    reading: Mapping[str, Any] | None
    fine_tuning: Mapping[str, Any]
    pretraining: Mapping[str, Any]
    corpus: Mapping[str, Any]
    ingest: Mapping[str, Any] | None
    ingest_uri: str
    tokenizer: Mapping[str, Any]
    evaluator: Mapping[str, Any] | None
    validation: Mapping[str, Any] | None
    blessing: Mapping[str, Any]
    baseline: Mapping[str, Any] | None


def task_of(inputs: CardInputs) -> str:
    """The fine-tuning task: training.json's, else the Trainer's custom_config's."""
    task = (inputs.training or {}).get("task") or inputs.fine_tuning.get("custom_config", {}).get("task")
    return task or NOTE_TASK


def label_names_of(inputs: CardInputs) -> list[str]:
    if inputs.predictions is not None and "label_names" in inputs.predictions:
        return [str(name) for name in inputs.predictions["label_names"]]
    return list(inputs.fine_tuning.get("custom_config", {}).get("label_names", []))


def build_card(
    inputs: CardInputs, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """The card's fields (see the module docstring and `render_markdown`); `report` is left for the
    executor to fill with the plots' file names."""
    task = task_of(inputs)
    problems = []
    if inputs.training is None:
        problems.append("the fine-tuning Trainer wrote no training.json: no training record")
    if inputs.predictions is None:
        problems.append("the fine-tuning Trainer wrote no eval_predictions.npz: no figures of the card's own")
    if inputs.ingest is None:
        problems.append("the ingest report has no summary.json")
    if inputs.evaluator is None:
        problems.append("no evaluation to read the Evaluator's figures from")
    scored = None
    if inputs.predictions is not None:
        scored = figures_lib.score(task, inputs.predictions, samples, confidence, seed)
    evaluation = _evaluation(task, scored, inputs, problems)
    blessing = _blessing(inputs, problems)
    card = {
        "card_version": CARD_VERSION,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "task": task,
            "label_names": label_names_of(inputs),
            **dict(inputs.model),
            "model_run_uri": inputs.model_run_uri,
        },
        "intended_use": _intended_use(task, scored),
        "training_data": _training_data(inputs),
        "tokenizer": _tokenizer(inputs.tokenizer),
        "pretraining": _pretraining(inputs.pretraining),
        "fine_tuning": _fine_tuning(task, inputs),
        "evaluation": evaluation,
        "blessing": blessing,
        "report": {},
        "problems": problems,
    }
    card["limitations"] = _limitations(task, card, scored)
    return card


def _headline(task: str, training: Mapping[str, Any] | None) -> str:
    names = figures_lib.OVERALL_FIGURES[task]
    metric = (training or {}).get("metric")
    return metric if metric in names else names[0]


def _evaluation(
    task: str, scored: dict[str, Any] | None, inputs: CardInputs, problems: list[str]
) -> dict[str, Any]:
    """The card's figures with, beside each, the Evaluator's figure of the same name (and the
    baseline's, when there was one), and the largest difference between the two."""
    evaluator = inputs.evaluator or {}
    names = EVALUATOR_NAMES[task]
    evaluation: dict[str, Any] = {
        "split": "eval",
        "headline": _headline(task, inputs.training),
        "evaluator_uri": evaluator.get("uri"),
        "evaluator": {
            "overall": dict(evaluator.get("overall", {})),
            "baseline": dict(evaluator.get("baseline", {})),
        },
    }
    if scored is None:
        return evaluation
    overall_evaluator, baseline = evaluator.get("overall", {}), evaluator.get("baseline", {})
    differences = {}
    for name, figure in scored["overall"].items():
        figure["evaluator_name"] = names[name]
        figure["evaluator"] = overall_evaluator.get(names[name])
        figure["baseline"] = baseline.get(names[name])
        if figure["evaluator"] is not None:
            differences[name] = abs(figure["value"] - figure["evaluator"])
    class_names = EVALUATOR_CLASS_NAMES[task]
    per_class_evaluator = evaluator.get("per_class", {})
    for class_id, row in enumerate(scored["per_class"]):
        for figure in figures_lib.CLASS_FIGURES:
            row[figure]["evaluator"] = per_class_evaluator.get(class_names[figure], {}).get(class_id)
    for column, rows in scored["slices"].items():
        for row in rows:
            theirs = evaluator.get("slices", {}).get(column, {}).get(row["value"], {})
            for name, figure in row["overall"].items():
                figure["evaluator"] = theirs.get(names[name])
    evaluation.update(scored)
    evaluation["difference_from_evaluator"] = max(differences.values()) if differences else None
    counted = overall_evaluator.get("example_count")
    if task != TOKEN_TASK and counted is not None and int(counted) != scored["units"]:
        problems.append(
            f"the Evaluator scored {int(counted)} eval notes, "
            f"the Trainer's predictions hold {scored['units']}"
        )
    if differences and max(differences.values()) > AGREEMENT:
        worst = max(differences, key=differences.get)
        problems.append(
            f"the card's {worst} and the Evaluator's {names[worst]} differ by {differences[worst]:.2g} "
            f"(more than {AGREEMENT:g}): {_why_different(task, inputs)}"
        )
    return evaluation


def _why_different(task: str, inputs: CardInputs) -> str:
    predictions = inputs.predictions or {}
    if task == TOKEN_TASK:
        return (
            "the Trainer scores each window of a long text as a row of its own (a word in two windows "
            "counts twice), the Evaluator scores the stitched text once"
        )
    if task == MULTI_LABEL_TASK and "thresholds" in predictions:
        margin = np.abs(np.asarray(predictions["probabilities"]) - np.asarray(predictions["thresholds"]))
        close = int((margin <= NUMERIC_TIE).sum())
        if close:
            return (
                f"{close} (note, label) probabilities lie within {NUMERIC_TIE:g} of their label's threshold "
                f"(the closest {float(margin.min()):.1g}), where the Trainer's float32 arithmetic and the "
                "exported graph's can decide differently"
            )
    if task in (NOTE_TASK, PAIR_TASK) and "targets" in predictions:
        unlabelled = int((np.asarray(predictions["targets"]) < 0).sum())
        if unlabelled:
            return (
                f"{unlabelled} eval notes have no class; the card leaves them out, the Evaluator's "
                "sparse_categorical_accuracy counts them as wrong"
            )
    return "the Trainer's predictions and the Evaluator's are not of the same notes or the same model"


def _blessing(inputs: CardInputs, problems: list[str]) -> dict[str, Any]:
    validation = inputs.validation or {}
    blessed = inputs.blessing.get("blessed")
    if blessed is None and "ok" in validation:
        blessed = validation["ok"]
    # The baseline the Evaluator recorded on its blessing is the one it compared with.
    baseline: Any = NO_BASELINE
    if inputs.blessing.get("baseline_uri"):
        baseline = {"uri": inputs.blessing["baseline_uri"], "artifact_id": inputs.blessing.get("baseline_id")}
    elif inputs.baseline:
        baseline = dict(inputs.baseline)
    resolved = (inputs.baseline or {}).get("uri")
    if isinstance(baseline, dict) and resolved and resolved != baseline["uri"]:
        problems.append("the resolver's baseline is not the one the Evaluator recorded on its blessing")
    return {
        "blessed": blessed,
        "decision": "blessed" if blessed else "not blessed" if blessed is not None else "unknown",
        "uri": inputs.blessing.get("uri"),
        "failed_thresholds": list(validation.get("failures", [])),
        "missing_slices": list(validation.get("missing_slices", [])),
        "rubber_stamp": validation.get("rubber_stamp"),
        "baseline": baseline,
    }


def _intended_use(task: str, scored: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "purpose": (
            f"Research, and decision support read by a clinician: {TASK_PHRASES[task]}. Its answers are "
            "suggestions to be checked, not findings."
        ),
        "not_for": [
            "Use as a medical device: it is not one, and is not cleared or approved as one.",
            "Use on patients, or in decisions about their care, before it is validated on the notes, "
            "the population and the workflow where it is to be used.",
            "Notes in other languages, or kinds of notes unlike those it saw (see note types).",
        ],
        "languages": ["English"],
        "note_types_seen": (scored or {}).get("note_types", {}),
    }


def _training_data(inputs: CardInputs) -> dict[str, Any]:
    ingest = dict(inputs.ingest or {})
    keys = ("input_records", "kept_examples", "duplicates_collapsed", "rejected", "skipped_not_notes")
    return {
        "corpus": dict(inputs.corpus),
        "ingest_report_uri": inputs.ingest_uri,
        "input_format": ingest.get("input_format", inputs.corpus.get("input_format")),
        "input_files": ingest.get("input_files"),
        "records": {key: ingest.get(key) for key in keys},
        "rejected_by_reason": ingest.get("rejected_by_reason", {}),
        "skipped_by_type": ingest.get("skipped_by_type", {}),
        "examples_per_split": ingest.get("examples_per_split", {}),
        "phi_replacements": ingest.get("phi_replacements", {}),
        **{
            key: ingest[key]
            for key in ("texts_in_several_splits", "groups_in_several_splits", "spans", "per_span")
            if key in ingest
        },
    }


def _tokenizer(stats: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "uri", "vocab_size", "requested_vocab_size", "unk_rate", "pieces_per_word", "measured_on",
        "sentences_used", "character_coverage", "seed", "sentencepiece_version", "reused_from",
        "vocabulary", "drift",
    )  # fmt: skip
    return {key: stats.get(key) for key in keys if key in stats}


def _pretraining(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The pretraining run: its model, preset and steps first, then the rest of its custom_config."""
    custom = dict(settings.get("custom_config", {}))
    record = {
        "uri": settings.get("uri"),
        "artifact_id": settings.get("artifact_id"),
        "preset": custom.pop("preset", None),
        "steps": settings.get("train_steps"),
    }
    return {**record, **dict(sorted(custom.items()))}


def _fine_tuning(task: str, inputs: CardInputs) -> dict[str, Any]:
    training = dict(inputs.training or {})
    custom = inputs.fine_tuning.get("custom_config", {})
    record = {
        "task": task,
        "label_names": label_names_of(inputs),
        "train_steps": inputs.fine_tuning.get("train_steps"),
        "batch_size": custom.get("batch_size"),
        "learning_rate": custom.get("learning_rate"),
        "seed": training.get("seed", custom.get("seed")),
        "start": training.get("start"),
    }
    for key in (
        "metric", "recipe", "steps_planned", "steps_trained", "best_step", "best", "stopped_early",
        "eval_every", "patience", "warmup_fraction", "warmup_steps", "clipnorm",
    ):  # fmt: skip
        if key in training:
            record[key] = training[key]
    record["evals"] = list(training.get("evals", []))
    if inputs.reading:
        record["reading"] = dict(inputs.reading)
    if inputs.predictions is not None and "thresholds" in inputs.predictions:
        record["thresholds"] = [float(t) for t in inputs.predictions["thresholds"]]
    return record


def _listed(names: Sequence[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _limitations(task: str, card: dict[str, Any], scored: dict[str, Any] | None) -> list[str]:
    """The known weaknesses that the run's own numbers show."""
    found = []
    train = card["training_data"]["examples_per_split"].get("train")
    if train is not None and train < 10 * SMALL_SPLIT:
        found.append(f"Small data: fine-tuned on {train} training examples.")
    if scored is None:
        return [*found, "No eval predictions: the figures below are the Evaluator's only, without intervals."]
    evaluation = card["evaluation"]
    unit = UNIT_WORDS[scored["unit"]]
    headline = evaluation["overall"][evaluation["headline"]]
    if scored["units"] < SMALL_SPLIT:
        found.append(
            f"Small eval split: {scored['units']} {unit}, so the intervals are wide "
            f"({evaluation['headline']} "
            f"{_number(headline['value'])}, 95% interval {_number(headline['low'])} to "
            f"{_number(headline['high'])})."
        )
    word = CLASS_WORDS[task]
    rows = scored["per_class"]
    absent = [row["name"] for row in rows if row["support"] == 0]
    if absent:
        found.append(
            f"{len(absent)} of {len(rows)} {word}s have no example in the eval split, so nothing is known of "
            f"how well they are found: {_listed(absent)}."
        )
    missed = [row["name"] for row in rows if row["support"] > 0 and row["predicted"] == 0]
    if missed:
        found.append(f"{len(missed)} {word}s in the eval split were never predicted: {_listed(missed)}.")
    chosen = ["the training step kept"] if card["fine_tuning"].get("best_step") is not None else []
    reading = card["fine_tuning"].get("reading") or {}
    if reading.get("window_pooling"):
        chosen.append("the window pooling")
    if task == MULTI_LABEL_TASK:
        chosen.append("each label's threshold")
    if chosen:
        found.append(
            f"{' and '.join(chosen).capitalize()} were chosen on the same eval split that these figures "
            "come from, so they are optimistic; the test split is held out and not scored here."
        )
    ece = scored["calibration"]["ece"]
    if ece is not None and not math.isnan(ece) and ece > POOR_CALIBRATION:
        found.append(
            f"Poorly calibrated: expected calibration error {ece:.3f}; read its probabilities as scores, "
            "not as the chance of being right."
        )
    if task in (NOTE_TASK, PAIR_TASK):
        targets = np.asarray(card["evaluation"].get("confusion_matrix", []))
        unscored = scored["units"] - int(targets.sum()) if targets.size else 0
        if unscored:
            found.append(f"{unscored} eval notes have no class among the label names and are not scored.")
    if task == TOKEN_TASK:
        found.append("Entities are scored per sentence or document only; no slices by note type.")
    kinds = scored.get("note_types", {})
    found.append(
        f"Seen only English notes, of {len(kinds)} note types (listed under intended use)."
        if kinds
        else "Seen only English text; the note types it was evaluated on are not recorded."
    )
    return found


# -- Markdown ---------------------------------------------------------------------------------------


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)


def _with_interval(figure: Mapping[str, Any]) -> str:
    return f"{_number(figure['value'])} ({_number(figure['low'])} to {_number(figure['high'])})"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return _number(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def _image(card: Mapping[str, Any], name: str, caption: str) -> list[str]:
    path = card.get("report", {}).get(name)
    return [f"![{caption}]({path})", ""] if path else []


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card as a page to read: summary, intended use, training data, tokenizer, pretraining,
    fine-tuning, evaluation (with the report's plots), blessing, limitations."""
    model, evaluation, blessing = card["model"], card["evaluation"], card["blessing"]
    task = model["task"]
    headline = evaluation["headline"]
    lines = [f"# Model card: {task.replace('_', ' ')}", ""]
    lines += [f"Generated {card['generated']} (card version {card['card_version']}).", ""]
    if card.get("push"):
        push = card["push"]
        lines += [f"Pushed as version {push['version']} to {push['destination']}.", ""]
    if card.get("problems"):
        lines += ["**Problems while making this card:**", ""]
        lines += [f"- {problem}" for problem in card["problems"]] + [""]

    lines += ["## Summary", ""]
    names = model["label_names"]
    summary = [
        f"- Task: {task} ({len(names)} {CLASS_WORDS[task]}s{': ' + _listed(names) if names else ''})",
        f"- Model: {model.get('uri')} (sha256 {str(model.get('sha256'))[:16]}…)",
    ]
    if headline in evaluation.get("overall", {}):
        figure = evaluation["overall"][headline]
        summary.append(
            f"- {headline} on the eval split: {_with_interval(figure)}, 95% bootstrap interval; "
            f"the Evaluator's {figure['evaluator_name']}: {_number(figure['evaluator'])}"
        )
    elif evaluation["evaluator"]["overall"]:
        found = evaluation["evaluator"]["overall"]
        summary.append(
            "- The Evaluator's figures: " + ", ".join(f"{k} {_number(v)}" for k, v in sorted(found.items()))
        )
    summary.append(f"- Blessing: **{blessing['decision']}**" + _failed(blessing))
    summary.append(f"- Compared with: {_baseline(blessing['baseline'])}")
    lines += [*summary, ""]

    use = card["intended_use"]
    lines += ["## Intended use", "", use["purpose"], "", "Not for:", ""]
    lines += [f"- {item}" for item in use["not_for"]] + [""]
    lines += [f"Languages: {', '.join(use['languages'])}.", ""]
    if use["note_types_seen"]:
        lines += ["Note types in the eval split:", ""]
        seen = sorted(use["note_types_seen"].items())
        lines += _table(
            ["note type", "notes"], [(kind or "(not given by the corpus)", n) for kind, n in seen]
        )

    lines += _training_data_markdown(card["training_data"])
    lines += ["## Tokenizer", ""]
    lines += _table(["", "value"], [(k.replace("_", " "), v) for k, v in card["tokenizer"].items()])
    lines += [
        "## Pretraining",
        "",
        "The fine-tuning starts from this pretraining run's model (or, as its start says, from the last "
        "blessed model).",
        "",
    ]
    lines += _table(
        ["", "value"], [(k.replace("_", " "), _json_cell(v)) for k, v in card["pretraining"].items()]
    )
    lines += _fine_tuning_markdown(card)
    lines += _evaluation_markdown(card)

    lines += ["## Blessing", ""]
    lines += [f"Decision: **{blessing['decision']}** (Evaluator blessing {blessing.get('uri')}).", ""]
    lines += [f"Baseline: {_baseline(blessing['baseline'])}.", ""]
    if blessing.get("rubber_stamp"):
        lines += [
            "No baseline to compare with: the thresholds on the change against a baseline were not applied.",
            "",
        ]
    if blessing["failed_thresholds"]:
        lines += _table(
            ["failed threshold", "slice", "value", "threshold"],
            [(f["metric"], f["slice"], f["value"], f["threshold"]) for f in blessing["failed_thresholds"]],
        )
    if blessing.get("missing_slices"):
        lines += [f"Slices the Evaluator did not find: {', '.join(blessing['missing_slices'])}.", ""]

    lines += ["## Limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]] + [""]
    return "\n".join(lines)


def _json_cell(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def _failed(blessing: Mapping[str, Any]) -> str:
    failed = blessing["failed_thresholds"]
    if not failed:
        return ""
    return " (failed: " + "; ".join(f"{f['metric']} on {f['slice']}: {f['threshold']}" for f in failed) + ")"


def _baseline(baseline: Any) -> str:
    if isinstance(baseline, dict):
        return f"the last blessed model, {baseline.get('uri')} (artifact {baseline.get('artifact_id')})"
    return str(baseline)


def _training_data_markdown(data: Mapping[str, Any]) -> list[str]:
    corpus = data["corpus"]
    lines = ["## Training data", ""]
    lines += [
        f"Corpus: {corpus.get('input_base')} ({data.get('input_format')}, {_number(data.get('input_files'))} "
        f"input files), read by the clinical ExampleGen; its report: {data['ingest_report_uri']}.",
        "",
    ]
    settings = [(k.replace("_", " "), _json_cell(v)) for k, v in sorted(corpus.items()) if k != "input_base"]
    lines += _table(["ExampleGen parameter", "value"], settings)
    lines += ["What each input record became:", ""]
    lines += _table(["records", "count"], [(k.replace("_", " "), v) for k, v in data["records"].items()])
    if data["rejected_by_reason"]:
        lines += _table(["rejected because", "records"], sorted(data["rejected_by_reason"].items()))
    if data["skipped_by_type"]:
        lines += _table(["skipped (not notes)", "records"], sorted(data["skipped_by_type"].items()))
    lines += _table(["split", "examples"], list(data["examples_per_split"].items()))
    if data["phi_replacements"]:
        lines += ["De-identification: PHI replaced in the kept examples, by kind:", ""]
        lines += _table(["PHI kind", "replacements"], sorted(data["phi_replacements"].items()))
    else:
        lines += ["De-identification: no PHI replacements were counted.", ""]
    for key in ("texts_in_several_splits", "groups_in_several_splits"):
        if data.get(key):
            lines += [
                f"{key.replace('_', ' ').capitalize()}: {data[key]} (from the corpus's official splits).",
                "",
            ]
    return lines


def _fine_tuning_markdown(card: Mapping[str, Any]) -> list[str]:
    tuning = card["fine_tuning"]
    lines = ["## Fine-tuning", ""]
    keys = (
        "task", "start", "recipe", "train_steps", "steps_planned", "steps_trained", "best_step", "metric",
        "best", "stopped_early", "eval_every", "patience", "warmup_fraction", "warmup_steps", "clipnorm",
        "batch_size", "learning_rate", "seed",
    )  # fmt: skip
    lines += _table(["", "value"], [(k.replace("_", " "), tuning[k]) for k in keys if k in tuning])
    reading = tuning.get("reading") or {}
    if reading.get("window_pooling"):
        lines += [
            f"Notes are read in windows, pooled by {reading['window_pooling']} (eval "
            f"{reading.get('eval_metric')} by pooling: {_json_cell(reading.get('eval_by_window_pooling'))}).",
            "",
        ]
    if tuning.get("thresholds"):
        lines += [
            "Each label is predicted where its probability reaches its own threshold, chosen on the eval "
            "split (model_card.json: fine_tuning.thresholds).",
            "",
        ]
    lines += _image(card, "training_curves", "Loss and eval metric over the training steps")
    return lines


def _evaluation_markdown(card: Mapping[str, Any]) -> list[str]:
    evaluation, task = card["evaluation"], card["model"]["task"]
    lines = ["## Evaluation", ""]
    if "overall" not in evaluation:
        found = evaluation["evaluator"]["overall"]
        lines += ["Only the Evaluator's figures (no eval predictions from the Trainer):", ""]
        return lines + _table(["figure", "Evaluator"], sorted(found.items()))
    bootstrap = evaluation["bootstrap"]
    unit = UNIT_WORDS[evaluation["unit"]]
    lines += [
        f"On the eval split: {evaluation['units']} {unit}. Intervals: {bootstrap['confidence']:.0%} "
        f"percentile bootstrap over {bootstrap['samples']} resamples of the {unit} "
        f"(seed {bootstrap['seed']}). Beside each figure, the Evaluator's own (TFMA, on the same split)"
        + (" and the baseline's." if evaluation["evaluator"]["baseline"] else "."),
        "",
    ]
    difference = evaluation.get("difference_from_evaluator")
    if difference is not None:
        lines += [f"Largest difference between the card's figures and the Evaluator's: {difference:.2g}.", ""]
    rows = [
        (name, _with_interval(f), f["evaluator_name"], f["evaluator"], f["baseline"])
        for name, f in evaluation["overall"].items()
    ]
    lines += _table(["figure", "value (95% interval)", "Evaluator's name", "Evaluator", "baseline"], rows)
    word = CLASS_WORDS[task]
    lines += [f"### Per {word}", ""]
    lines += _table(
        [word, "support", "predicted", "precision", "recall", "F1", "Evaluator F1"],
        [
            (row["name"], row["support"], row["predicted"], _with_interval(row["precision"]),
             _with_interval(row["recall"]), _with_interval(row["f1"]), row["f1"]["evaluator"])
            for row in evaluation["per_class"]
        ],
    )  # fmt: skip
    if task in (NOTE_TASK, PAIR_TASK):
        lines += _image(card, "confusion_matrix", "Confusion matrix on the eval split")
    else:
        lines += _image(card, "per_class_scores", f"Precision, recall and F1 per {word}")
    for column, rows in evaluation.get("slices", {}).items():
        lines += [f"### By {column.replace('_', ' ')}", ""]
        header = [column, unit, *evaluation["figure_names"], "Evaluator " + evaluation["headline"]]
        lines += _table(
            header,
            [
                (row["value"], row["units"], *(_with_interval(f) for f in row["overall"].values()),
                 row["overall"][evaluation["headline"]]["evaluator"])
                for row in rows
            ],
        )  # fmt: skip
    calibration = evaluation["calibration"]
    lines += ["### Calibration", ""]
    lines += [
        f"Reliability of {calibration['of']}, in {len(calibration['bins'])} bins: expected calibration error "
        f"{_number(calibration['ece'])} over {calibration['predictions']} predictions.",
        "",
    ]
    lines += _image(card, "reliability", "Reliability diagram")
    return lines


def write_files(card: Mapping[str, Any], folder: str) -> None:
    """model_card.md, then model_card.json (the file that says the card is whole), into `folder`."""
    fileio.makedirs(folder)
    with fileio.open(os.path.join(folder, MARKDOWN_FILE), "w") as f:
        f.write(render_markdown(card))
    with fileio.open(os.path.join(folder, CARD_FILE), "w") as f:
        f.write(to_json(card))


def to_json(card: Mapping[str, Any]) -> str:
    """The card as JSON: NaN (an interval of no units) written as null."""
    return json.dumps(_finite(card), indent=2, sort_keys=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.generic):
        return _finite(value.item())
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
