"""Reads the run's artifacts, scores the fine-tuning Trainer's eval predictions, and writes the card:
`model_card.json`, `model_card.md` and `report/*.png` in the `model_card` artifact's folder.

Everything is read with `fileio`, so the artifacts may live on cloud storage. A model run without the
Trainer's training.json or eval_predictions.npz still gets a card (with the Evaluator's figures and
the problem said at its top); a file that is there but malformed stops the component.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components import model_layout
from components.model_card import card as card_lib
from components.model_card import evaluation as evaluation_lib
from components.model_card import figures as figures_lib
from components.model_card import report as report_lib
from components.pusher.executor import model_digest

INGEST_REPORT_KEY = "ingest_report"
TOKENIZER_KEY = "tokenizer"
PRETRAINED_MODEL_KEY = "pretrained_model"
MODEL_KEY = "model"
MODEL_RUN_KEY = "model_run"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
BASELINE_MODEL_KEY = "baseline_model"
MODEL_CARD_KEY = "model_card"

CORPUS_KEY = "corpus"
PRETRAINING_KEY = "pretraining"
FINE_TUNING_KEY = "fine_tuning"
BOOTSTRAP_SAMPLES_KEY = "bootstrap_samples"
SEED_KEY = "seed"

#: The fine-tuning Trainer's files in its model run folder (components/trainer/finetune.py).
TRAINING_FILE = "training.json"
PREDICTIONS_FILE = "eval_predictions.npz"
READING_FILE = "reading.json"
SUMMARY_FILE = "summary.json"
STATS_FILE = "stats.json"
VALIDATIONS_PREFIX = "validations"


def _read_json(path: str) -> Any | None:
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as f:
        return json.loads(f.read())


def _read_predictions(path: str) -> dict | None:
    if not fileio.exists(path):
        return None
    with fileio.open(path, "rb") as f:
        return figures_lib.load_predictions(io.BytesIO(f.read()))


def _single(input_dict: dict[str, list[types.Artifact]], key: str) -> types.Artifact | None:
    artifacts = input_dict.get(key) or []
    return artifacts[0] if artifacts else None


def _property(artifact: types.Artifact, name: str) -> Any | None:
    if not artifact.has_custom_property(name):
        return None
    return artifact.get_custom_property(name)


def _identity(artifact: types.Artifact) -> dict[str, Any]:
    return {"uri": artifact.uri, "artifact_id": artifact.id or None}


def _tokenizer(artifact: types.Artifact) -> dict[str, Any]:
    stats = _read_json(os.path.join(artifact.uri, STATS_FILE))
    if stats is None and _property(artifact, "stats"):
        stats = json.loads(_property(artifact, "stats"))
    return {"uri": artifact.uri, **(stats or {})}


def _blessing(artifact: types.Artifact) -> dict[str, Any]:
    blessed = _property(artifact, "blessed")
    if blessed is None:
        blessed = True if fileio.exists(os.path.join(artifact.uri, "BLESSED")) else None
        if blessed is None and fileio.exists(os.path.join(artifact.uri, "NOT_BLESSED")):
            blessed = False
    return {
        "uri": artifact.uri,
        "blessed": None if blessed is None else bool(blessed),
        "baseline_uri": _property(artifact, "baseline_model"),
        "baseline_id": _property(artifact, "baseline_model_id"),
    }


def _evaluation(artifact: types.Artifact) -> tuple[dict[str, Any], dict[str, Any] | None]:
    figures = {"uri": artifact.uri, **evaluation_lib.read_metrics(artifact.uri)}
    validated = fileio.glob(os.path.join(artifact.uri, VALIDATIONS_PREFIX + "*"))
    return figures, evaluation_lib.read_validation(artifact.uri) if validated else None


def read_inputs(
    input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]
) -> card_lib.CardInputs:
    """The card's inputs from the artifacts and the parameters."""
    model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
    model_run = artifact_utils.get_single_instance(input_dict[MODEL_RUN_KEY])
    report = artifact_utils.get_single_instance(input_dict[INGEST_REPORT_KEY])
    pretrained = artifact_utils.get_single_instance(input_dict[PRETRAINED_MODEL_KEY])
    evaluation = _single(input_dict, EVALUATION_KEY)
    blessing = _single(input_dict, BLESSING_KEY)
    baseline = _single(input_dict, BASELINE_MODEL_KEY)
    evaluator, validation = _evaluation(evaluation) if evaluation is not None else (None, None)
    return card_lib.CardInputs(
        model={**_identity(model), "sha256": model_digest(model_layout.client_model_path(model.uri))},
        model_run_uri=model_run.uri,
        training=_read_json(os.path.join(model_run.uri, TRAINING_FILE)),
        predictions=_read_predictions(os.path.join(model_run.uri, PREDICTIONS_FILE)),
        reading=_read_json(os.path.join(model_run.uri, READING_FILE)),
        fine_tuning=json.loads(exec_properties.get(FINE_TUNING_KEY) or "{}"),
        pretraining={
            **_identity(pretrained),
            **json.loads(exec_properties.get(PRETRAINING_KEY) or "{}"),
        },
        corpus=json.loads(exec_properties.get(CORPUS_KEY) or "{}"),
        ingest=_read_json(os.path.join(report.uri, SUMMARY_FILE)),
        ingest_uri=report.uri,
        tokenizer=_tokenizer(artifact_utils.get_single_instance(input_dict[TOKENIZER_KEY])),
        evaluator=evaluator,
        validation=validation,
        blessing=_blessing(blessing) if blessing is not None else {},
        baseline=_identity(baseline) if baseline is not None else None,
    )


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        output = artifact_utils.get_single_instance(output_dict[MODEL_CARD_KEY])
        inputs = read_inputs(input_dict, exec_properties)
        card = card_lib.build_card(
            inputs,
            samples=int(exec_properties.get(BOOTSTRAP_SAMPLES_KEY) or 1000),
            seed=int(exec_properties.get(SEED_KEY) or 0),
        )
        card["report"] = report_lib.write_report(card, os.path.join(output.uri, card_lib.REPORT_DIR))
        card_lib.write_files(card, output.uri)

        evaluation, blessing = card["evaluation"], card["blessing"]
        headline = evaluation["headline"]
        if headline in evaluation.get("overall", {}):
            output.set_string_custom_property("headline", headline)
            output.set_float_custom_property(headline, evaluation["overall"][headline]["value"])
        if blessing["blessed"] is not None:
            output.set_int_custom_property("blessed", int(blessing["blessed"]))
        output.set_int_custom_property("problems", len(card["problems"]))
        for problem in card["problems"]:
            logging.warning("model card: %s", problem)
        logging.info("model card written to %s (%s)", output.uri, blessing["decision"])
