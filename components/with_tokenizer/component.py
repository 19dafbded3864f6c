"""`TokenizedTransform` and `TokenizedTrainer`: TFX's Transform and Trainer plus a `tokenizer` input.

The user function reads the tokenizer's folder from `custom_config["tokenizer_dir"]`. Both name their
user function by import path (`preprocessing_fn="components.transform_module.preprocessing_fn"`), not
by module file: the project is installed wherever the pipeline runs (locally, in the Kubeflow image,
on Airflow workers), so no user-module packaging is needed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tfx import types
from tfx.dsl.components.base import base_beam_component, base_component, executor_spec
from tfx.proto import trainer_pb2, transform_pb2
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.standard_component_specs import TrainerSpec, TransformSpec
from tfx.utils import json_utils

from components.sentencepiece_tokenizer.component import SentencePieceModel
from components.with_tokenizer import executor

_TOKENIZER_INPUT = {executor.TOKENIZER_KEY: ChannelParameter(type=SentencePieceModel)}


class TokenizedTransformSpec(TransformSpec):
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {**TransformSpec.INPUTS, **_TOKENIZER_INPUT}


class TokenizedTrainerSpec(TrainerSpec):
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        **TrainerSpec.INPUTS,
        **_TOKENIZER_INPUT,
        executor.WARM_START_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }


class TokenizedTransform(base_beam_component.BaseBeamComponent):
    """Transform (materialized examples, statistics, analyzer cache) whose function gets the tokenizer."""

    SPEC_CLASS = TokenizedTransformSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.TransformExecutor)

    def __init__(
        self,
        examples: types.BaseChannel,
        schema: types.BaseChannel,
        tokenizer: types.BaseChannel,
        preprocessing_fn: str,
        custom_config: dict[str, Any] | None = None,
        splits_config: transform_pb2.SplitsConfig | None = None,
    ):
        transformed = types.Channel(type=standard_artifacts.Examples)
        transformed.matching_channel_name = "examples"
        spec = TokenizedTransformSpec(
            examples=examples,
            schema=schema,
            tokenizer=tokenizer,
            preprocessing_fn=preprocessing_fn,
            custom_config=json_utils.dumps(custom_config or {}),
            splits_config=splits_config,
            force_tf_compat_v1=0,
            disable_statistics=0,
            transform_graph=types.Channel(type=standard_artifacts.TransformGraph),
            transformed_examples=transformed,
            updated_analyzer_cache=types.Channel(type=standard_artifacts.TransformCache),
            pre_transform_schema=types.Channel(type=standard_artifacts.Schema),
            pre_transform_stats=types.Channel(type=standard_artifacts.ExampleStatistics),
            post_transform_schema=types.Channel(type=standard_artifacts.Schema),
            post_transform_stats=types.Channel(type=standard_artifacts.ExampleStatistics),
            post_transform_anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
        )
        super().__init__(spec=spec)


class TokenizedTrainer(base_component.BaseComponent):
    """Trainer (TFX's GenericExecutor, a `run_fn`) whose function also gets the tokenizer, and
    optionally a model to start from (`warm_start_model`, beside TFX's `base_model`)."""

    SPEC_CLASS = TokenizedTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.TrainerExecutor)

    def __init__(
        self,
        examples: types.BaseChannel,
        tokenizer: types.BaseChannel,
        run_fn: str,
        train_args: trainer_pb2.TrainArgs,
        eval_args: trainer_pb2.EvalArgs,
        transform_graph: types.BaseChannel | None = None,
        schema: types.BaseChannel | None = None,
        base_model: types.BaseChannel | None = None,
        custom_config: dict[str, Any] | None = None,
        warm_start_model: types.BaseChannel | None = None,
    ):
        spec = TokenizedTrainerSpec(
            warm_start_model=warm_start_model,
            examples=examples,
            tokenizer=tokenizer,
            transform_graph=transform_graph,
            schema=schema,
            base_model=base_model,
            run_fn=run_fn,
            train_args=train_args,
            eval_args=eval_args,
            custom_config=json_utils.dumps(custom_config or {}),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
        )
        super().__init__(spec=spec)
