"""The SentencePiece tokenizer component: Examples in, a trained `SentencePieceModel` artifact out.

It reads only the train split (`train_split`) to train, and the eval split (`eval_split`), when there
is one, to measure the UNK rate and pieces per word recorded in stats.json and on the artifact.

A vocabulary is trained once and reused: given a `previous` tokenizer of the same `vocabulary_version`
(the pipeline resolves the one an earlier run trained, see pipeline/resolvers.py), the component copies
it instead of training, and measures how the new data reads with it (its drift, which the AnomalyGate
checks). A new vocabulary makes every pretrained model unusable, so only a new vocabulary_version
trains one.
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

    Custom properties: `vocab_size`, `unk_rate`, `pieces_per_word` (of this run's data), `measured_on`
    (split name), `stats` (the whole stats.json), `vocabulary_version`, `vocabulary_sha256` (of
    spm.model), `requested_vocab_size`, `reused` (1 when copied from `reused_from`) and, when reused,
    `vocabulary_unk_rate`, `vocabulary_pieces_per_word` (the figures it was trained with) and `drift`
    (JSON: unk_rate_increase, pieces_per_word_ratio).
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
        executor.VOCABULARY_VERSION_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.PREVIOUS_KEY: ChannelParameter(type=SentencePieceModel, optional=True),
    }
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.TOKENIZER_KEY: ChannelParameter(type=SentencePieceModel)
    }


class SentencePieceTokenizer(base_component.BaseComponent):
    """Trains ALBERT's SentencePiece unigram model on the train split of `examples`, or reuses
    `previous` when it has the same vocabulary_version."""

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
        previous: types.BaseChannel | None = None,
        vocabulary_version: int = 1,
    ):
        spec = SentencePieceTokenizerSpec(
            examples=examples,
            previous=previous,
            vocabulary_version=vocabulary_version,
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
