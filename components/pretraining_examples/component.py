"""PretrainingExamples as a TFX component: its spec and its constructor.

Between the TokenizedTransform and the pretraining Trainer: the sentence-order pairs and n-gram masks
are made once, by Beam, on as many workers as the runner gives, and written as Parquet that the
Trainer reads without TensorFlow. Every parameter is an execution property, so the instances are
recorded in ML Metadata with the settings they were made with, and a new setting makes new instances
instead of a cache hit. The constructor validates the parameters, so a bad one fails when the pipeline
is built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.pretraining_examples import executor
from components.sentencepiece_tokenizer.component import SentencePieceModel


class PretrainingExamplesSpec(types.ComponentSpec):
    """Inputs (transformed examples, tokenizer), masking parameters and the Parquet `examples` output."""

    PARAMETERS: ClassVar[dict[str, ExecutionParameter]] = {
        executor.MAX_SEQ_LENGTH: ExecutionParameter(type=int),
        executor.MAX_PREDICTIONS_PER_SEQ: ExecutionParameter(type=int),
        executor.MASKED_LM_PROB: ExecutionParameter(type=float),
        executor.SHORT_SEQ_PROB: ExecutionParameter(type=float),
        executor.DUPE_FACTOR: ExecutionParameter(type=int),
        executor.SEED: ExecutionParameter(type=int),
        executor.RANDOM_POOL_SIZE: ExecutionParameter(type=int),
        executor.SPLITS: ExecutionParameter(type=str),
    }
    # The input is `transformed_examples`, as the Transform names it: a spec's keys must be unique, and
    # `examples` is the output's, the key the Trainer takes its examples by.
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.TRANSFORMED_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.TOKENIZER_KEY: ChannelParameter(type=SentencePieceModel),
    }
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }


class PretrainingExamples(base_beam_component.BaseBeamComponent):
    """ALBERT pretraining instances of each split of the transformed `examples`, as Parquet.

    Output `examples`: a standard Examples artifact (payload and file format Parquet) with one
    `Split-<name>` folder per split of `splits`, `pretraining_examples.json` at its root, and custom
    properties `instances_<split>` and `vocabulary_sha256`. The instances are the same for the same
    notes, tokenizer, settings and seed, on any runner and any number of workers.
    """

    SPEC_CLASS = PretrainingExamplesSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        tokenizer: types.BaseChannel,
        *,
        max_seq_length: int,
        max_predictions_per_seq: int,
        dupe_factor: int,
        masked_lm_prob: float = 0.15,
        short_seq_prob: float = 0.1,
        seed: int = 0,
        random_pool_size: int = 1000,
        splits: Sequence[str] = executor.DEFAULT_SPLITS,
    ) -> None:
        """`examples` is the TokenizedTransform's `transformed_examples`, `tokenizer` the
        SentencePieceTokenizer's output. `max_seq_length` and `max_predictions_per_seq` must be the
        pretraining Trainer's; `dupe_factor` is how many times each note is masked anew (google: 10),
        which multiplies the instances and the storage. Raises ValueError for an invalid setting."""
        if isinstance(splits, str):
            raise ValueError(f"splits must be a sequence of split names, received the string {splits!r}")
        parameters: dict[str, Any] = {
            executor.MAX_SEQ_LENGTH: max_seq_length,
            executor.MAX_PREDICTIONS_PER_SEQ: max_predictions_per_seq,
            executor.MASKED_LM_PROB: masked_lm_prob,
            executor.SHORT_SEQ_PROB: short_seq_prob,
            executor.DUPE_FACTOR: dupe_factor,
            executor.SEED: seed,
            executor.RANDOM_POOL_SIZE: random_pool_size,
            executor.SPLITS: json.dumps(list(splits)),
        }
        executor.PretrainingParams.from_exec_properties(parameters)
        spec = PretrainingExamplesSpec(
            transformed_examples=examples,
            tokenizer=tokenizer,
            **parameters,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
