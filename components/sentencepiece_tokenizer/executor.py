"""Executor of the SentencePiece tokenizer component: trains on the train split's sentences only.

Reads the ExampleGen's tf.Examples (`Split-<name>/`, gzip TFRecords, a bytes-list `sentences` feature),
streams the train split into `train_sentencepiece`, measures UNK rate and pieces per word on the eval
split when there is one, and copies spm.model, spm.vocab and stats.json to the output artifact with
`fileio`, so the output may live on cloud storage. Errors name the file and record, never the text.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components.sentencepiece_tokenizer.train import MODEL_FILE, STATS_FILE, VOCAB_FILE, train_sentencepiece

EXAMPLES_KEY = "examples"
TOKENIZER_KEY = "tokenizer"
VOCAB_SIZE_KEY = "vocab_size"
MAX_SENTENCES_KEY = "max_sentences"
TRAIN_SPLIT_KEY = "train_split"
EVAL_SPLIT_KEY = "eval_split"
SEED_KEY = "seed"
CHARACTER_COVERAGE_KEY = "character_coverage"
VOCAB_SIZE_FIT_KEY = "vocab_size_fit"

SENTENCES_FEATURE = "sentences"


def read_sentences(split_uris: Sequence[str], feature: str = SENTENCES_FEATURE) -> Iterator[str]:
    """Streams the `feature` strings of every tf.Example under the split folders, in file order."""
    for split_uri in split_uris:
        for path in sorted(fileio.glob(os.path.join(split_uri, "*"))):
            compression = "GZIP" if path.endswith(".gz") else ""
            records = tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator()
            for record_number, record in enumerate(records):
                example = tf.train.Example.FromString(record)
                values = example.features.feature[feature].bytes_list.value
                for index, value in enumerate(values):
                    try:
                        yield value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ValueError(
                            f"{path}: record {record_number}: {feature}[{index}] is not valid UTF-8"
                        ) from None


def _split_uris(examples: list[types.Artifact], split: str) -> list[str] | None:
    """The folders of `split` in every Examples artifact, or None where some artifact lacks it."""
    if all(split in artifact_utils.decode_split_names(a.split_names) for a in examples):
        return artifact_utils.get_split_uris(examples, split)
    return None


class Executor(base_executor.BaseExecutor):
    """Trains the SentencePiece model and writes it to the `tokenizer` artifact."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = input_dict[EXAMPLES_KEY]
        output = artifact_utils.get_single_instance(output_dict[TOKENIZER_KEY])
        train_split = exec_properties.get(TRAIN_SPLIT_KEY) or "train"
        eval_split = exec_properties.get(EVAL_SPLIT_KEY) or "eval"
        if train_split == eval_split:
            raise ValueError(f"train_split and eval_split are both {train_split!r}")

        train_uris = _split_uris(examples, train_split)
        if train_uris is None:
            available = [artifact_utils.decode_split_names(a.split_names) for a in examples]
            raise ValueError(f"no {train_split!r} split in the examples (splits: {available})")
        eval_uris = _split_uris(examples, eval_split)

        with tempfile.TemporaryDirectory() as local_dir:
            trained = train_sentencepiece(
                read_sentences(train_uris),
                local_dir,
                vocab_size=int(exec_properties[VOCAB_SIZE_KEY]),
                max_sentences=int(exec_properties[MAX_SENTENCES_KEY]),
                seed=int(exec_properties[SEED_KEY]),
                character_coverage=float(exec_properties[CHARACTER_COVERAGE_KEY]),
                eval_sentences=read_sentences(eval_uris) if eval_uris is not None else None,
                eval_name=eval_split,
                vocab_size_fit=exec_properties.get(VOCAB_SIZE_FIT_KEY) or "error",
            )
            fileio.makedirs(output.uri)
            for name in (MODEL_FILE, VOCAB_FILE, STATS_FILE):
                fileio.copy(os.path.join(local_dir, name), os.path.join(output.uri, name), overwrite=True)

        stats = trained.stats
        output.set_int_custom_property("vocab_size", stats["vocab_size"])
        output.set_string_custom_property("measured_on", stats["measured_on"])
        output.set_float_custom_property("unk_rate", stats["unk_rate"])
        output.set_float_custom_property("pieces_per_word", stats["pieces_per_word"])
        output.set_string_custom_property("stats", json.dumps(stats, sort_keys=True))
