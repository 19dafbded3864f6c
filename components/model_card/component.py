"""`ModelCard`: the run's artifacts in, a `ModelCard` artifact out (model_card.json, model_card.md,
report/*.png); the Pusher copies it beside the model it pushes.

Inputs: the ingest report (what the corpus became), the tokenizer, the pretraining Trainer's model,
the fine-tuning Trainer's model and model run (training.json, eval_predictions.npz), the Evaluator's
evaluation and blessing, and the resolver's baseline (empty for a first model). The parameters
record what no artifact carries: ExampleGen's and both Trainers' settings, given as their
`exec_properties`, and the bootstrap's size and seed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.clinical_example_gen.artifacts import IngestReport
from components.model_card import executor
from components.sentencepiece_tokenizer.component import SentencePieceModel

#: The ExampleGen parameters the card quotes (its driver's input_fingerprint changes every run).
CORPUS_PARAMETERS = (
    "input_base", "input_format", "reader_config", "splits", "split_source", "max_note_bytes",
    "scrubber_config", "spans",
)  # fmt: skip


class ModelCardArtifact(Artifact):
    """A folder: model_card.json (the fields), model_card.md (the page) and report/*.png (the plots).

    Custom properties: `headline` (the figure's name) and its value, `blessed`, `problems` (how many
    things the card could not say)."""

    # "namespace.Name": the form the Kubeflow V2 compiler requires of custom artifact types.
    TYPE_NAME = "clinical_albert.ModelCard"


class ModelCardSpec(types.ComponentSpec):
    PARAMETERS: ClassVar[dict[str, ExecutionParameter]] = {
        executor.CORPUS_KEY: ExecutionParameter(type=str),
        executor.PRETRAINING_KEY: ExecutionParameter(type=str),
        executor.FINE_TUNING_KEY: ExecutionParameter(type=str),
        executor.BOOTSTRAP_SAMPLES_KEY: ExecutionParameter(type=int),
        executor.SEED_KEY: ExecutionParameter(type=int),
    }
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.INGEST_REPORT_KEY: ChannelParameter(type=IngestReport),
        executor.TOKENIZER_KEY: ChannelParameter(type=SentencePieceModel),
        executor.PRETRAINED_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun),
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.MODEL_CARD_KEY: ChannelParameter(type=ModelCardArtifact)
    }


def _decoded(value: Any) -> Any:
    """A parameter as data: the JSON strings that TFX keeps configs in, parsed."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def corpus_settings(exec_properties: Mapping[str, Any]) -> dict[str, Any]:
    """ExampleGen's corpus parameters (see CORPUS_PARAMETERS), decoded."""
    return {key: _decoded(exec_properties[key]) for key in CORPUS_PARAMETERS if key in exec_properties}


def trainer_settings(exec_properties: Mapping[str, Any]) -> dict[str, Any]:
    """A Trainer's custom_config and its planned train steps."""
    custom = _decoded(exec_properties.get("custom_config") or "{}")
    train_args = _decoded(exec_properties.get("train_args") or "{}")
    steps = (
        train_args.get("num_steps")
        if isinstance(train_args, dict)
        else getattr(train_args, "num_steps", None)
    )
    return {"custom_config": custom if isinstance(custom, dict) else {}, "train_steps": steps}


class ModelCard(base_component.BaseComponent):
    SPEC_CLASS = ModelCardSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        ingest_report: types.BaseChannel,
        tokenizer: types.BaseChannel,
        pretrained_model: types.BaseChannel,
        model: types.BaseChannel,
        model_run: types.BaseChannel,
        evaluation: types.BaseChannel,
        blessing: types.BaseChannel,
        corpus: Mapping[str, Any],
        pretraining: Mapping[str, Any],
        fine_tuning: Mapping[str, Any],
        baseline_model: types.BaseChannel | None = None,
        bootstrap_samples: int = 1000,
        seed: int = 0,
    ):
        """`corpus`, `pretraining` and `fine_tuning`: the `exec_properties` of the ExampleGen and the
        two Trainers (only the settings named above are kept)."""
        if bootstrap_samples < 1:
            raise ValueError(f"bootstrap_samples must be at least 1, received {bootstrap_samples}")
        super().__init__(
            spec=ModelCardSpec(
                ingest_report=ingest_report,
                tokenizer=tokenizer,
                pretrained_model=pretrained_model,
                model=model,
                model_run=model_run,
                evaluation=evaluation,
                blessing=blessing,
                baseline_model=baseline_model,
                corpus=json.dumps(corpus_settings(corpus), sort_keys=True),
                pretraining=json.dumps(trainer_settings(pretraining), sort_keys=True),
                fine_tuning=json.dumps(trainer_settings(fine_tuning), sort_keys=True),
                bootstrap_samples=bootstrap_samples,
                seed=seed,
                model_card=types.Channel(type=ModelCardArtifact),
            )
        )
