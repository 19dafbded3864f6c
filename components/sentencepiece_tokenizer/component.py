"""The SentencePiece tokenizer component: Examples in, a trained `SentencePieceModel` artifact out.

It reads only the train split (`train_split`) to train, and the eval split (`eval_split`), when there
is one, to measure the UNK rate and pieces per word recorded in stats.json and on the artifact.
"""

from __future__ import annotations

from typing import ClassVar

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.sentencepiece_tokenizer import executor


class SentencePieceModel(artifact.Artifact):
    """A trained SentencePiece model: `spm.model`, `spm.vocab` and `stats.json` in its folder.

    Custom properties: `vocab_size`, `unk_rate`, `pieces_per_word`, `measured_on` (split name) and
    `stats` (the whole stats.json).
    """

    # "namespace.Name": the form the Kubeflow V2 compiler requires of custom artifact types.
    TYPE_NAME = "clinical_albert.SentencePieceTokenizer"


class SentencePieceTokenizerSpec(types.ComponentSpec):
    """Inputs, parameters and output of the tokenizer component."""

    PARAMETERS: ClassVar[dict[str, ExecutionParameter]] = {
        executor.VOCAB_SIZE_KEY: ExecutionParameter(type=int),
        executor.MAX_SENTENCES_KEY: ExecutionParameter(type=int),
        executor.TRAIN_SPLIT_KEY: ExecutionParameter(type=str),
        executor.EVAL_SPLIT_KEY: ExecutionParameter(type=str),
        executor.SEED_KEY: ExecutionParameter(type=int),
        executor.CHARACTER_COVERAGE_KEY: ExecutionParameter(type=float),
        executor.VOCAB_SIZE_FIT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)
    }
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.TOKENIZER_KEY: ChannelParameter(type=SentencePieceModel)
    }


class SentencePieceTokenizer(base_component.BaseComponent):
    """Trains ALBERT's SentencePiece unigram model on the train split of `examples`."""

    SPEC_CLASS = SentencePieceTokenizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        vocab_size: int = 30000,
        max_sentences: int = 1_000_000,
        train_split: str = "train",
        eval_split: str = "eval",
        seed: int = 0,
        character_coverage: float = 0.99995,
        vocab_size_fit: str = "error",
    ):
        spec = SentencePieceTokenizerSpec(
            examples=examples,
            vocab_size=vocab_size,
            max_sentences=max_sentences,
            train_split=train_split,
            eval_split=eval_split,
            seed=seed,
            character_coverage=character_coverage,
            vocab_size_fit=vocab_size_fit,
            tokenizer=types.Channel(type=SentencePieceModel),
        )
        super().__init__(spec=spec)
