"""Executor of the SentencePiece tokenizer component: trains on the train split's sentences only.

Reads the ExampleGen's tf.Examples (`Split-<name>/`, gzip TFRecords, a bytes-list `sentences` feature),
streams the train split into `train_sentencepiece`, measures UNK rate and pieces per word on the eval
split when there is one, and copies spm.model, spm.vocab and stats.json to the output artifact with
`fileio`, so the output may live on cloud storage. Errors name the file and record, never the text.

With a `previous` tokenizer of the same vocabulary_version it trains nothing: the vocabulary is copied,
and the new data's UNK rate and pieces per word (on the split the vocabulary was measured on, when the
new examples have it) are recorded beside the vocabulary's own, with their difference (`drift`).
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

from components.sentencepiece_tokenizer.train import (
    MODEL_FILE,
    STATS_FILE,
    VOCAB_FILE,
    tokenization_stats,
    train_sentencepiece,
    vocabulary_sha256,
)

EXAMPLES_KEY = "examples"
TOKENIZER_KEY = "tokenizer"
VOCAB_SIZE_KEY = "vocab_size"
MAX_SENTENCES_KEY = "max_sentences"
TRAIN_SPLIT_KEY = "train_split"
EVAL_SPLIT_KEY = "eval_split"
SEED_KEY = "seed"
CHARACTER_COVERAGE_KEY = "character_coverage"
VOCAB_SIZE_FIT_KEY = "vocab_size_fit"
VOCABULARY_VERSION_KEY = "vocabulary_version"
PREVIOUS_KEY = "previous"

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

        version = int(exec_properties.get(VOCABULARY_VERSION_KEY) or 1)
        previous = (input_dict.get(PREVIOUS_KEY) or [None])[0]
        if previous is not None and vocabulary_version(previous) == version:
            stats = _reuse(previous, output, examples, int(exec_properties[VOCAB_SIZE_KEY]), version)
        else:
            stats = _train(exec_properties, output, train_uris, eval_uris, eval_split)
        with fileio.open(os.path.join(output.uri, MODEL_FILE), "rb") as f:
            sha256 = vocabulary_sha256(f.read())
        output.set_int_custom_property("vocab_size", stats["vocab_size"])
        output.set_int_custom_property("requested_vocab_size", stats["requested_vocab_size"])
        output.set_string_custom_property("measured_on", stats["measured_on"])
        output.set_float_custom_property("unk_rate", stats["unk_rate"])
        output.set_float_custom_property("pieces_per_word", stats["pieces_per_word"])
        output.set_string_custom_property("stats", json.dumps(stats, sort_keys=True))
        output.set_int_custom_property("vocabulary_version", version)
        output.set_string_custom_property("vocabulary_sha256", sha256)
        output.set_int_custom_property("reused", int("reused_from" in stats))
        if "reused_from" in stats:
            output.set_string_custom_property("reused_from", stats["reused_from"])
            output.set_float_custom_property("vocabulary_unk_rate", stats["vocabulary"]["unk_rate"])
            output.set_float_custom_property(
                "vocabulary_pieces_per_word", stats["vocabulary"]["pieces_per_word"]
            )
            output.set_string_custom_property("drift", json.dumps(stats["drift"], sort_keys=True))


def vocabulary_version(tokenizer: types.Artifact) -> int:
    """A tokenizer artifact's vocabulary_version (1 for those made before versions existed)."""
    if tokenizer.has_custom_property(VOCABULARY_VERSION_KEY):
        return tokenizer.get_int_custom_property(VOCABULARY_VERSION_KEY)
    return 1


def was_reused(tokenizer: types.Artifact) -> bool:
    """Whether the artifact is a copy of an earlier vocabulary rather than one trained."""
    return tokenizer.has_custom_property("reused") and bool(tokenizer.get_int_custom_property("reused"))


def _train(
    exec_properties: dict[str, Any],
    output: types.Artifact,
    train_uris: list[str],
    eval_uris: list[str] | None,
    eval_split: str,
) -> dict[str, Any]:
    """Trains a new vocabulary into `output`; returns its stats."""
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
    return trained.stats


def _reuse(
    previous: types.Artifact,
    output: types.Artifact,
    examples: list[types.Artifact],
    vocab_size: int,
    version: int,
) -> dict[str, Any]:
    """Copies `previous`'s vocabulary into `output` and measures the new examples with it.

    Raises ValueError when the config asks for another vocab_size under the same vocabulary_version:
    that is a new vocabulary, which must be asked for explicitly."""
    with fileio.open(os.path.join(previous.uri, STATS_FILE)) as f:
        own = json.load(f)
    requested = int(own.get("requested_vocab_size", own["vocab_size"]))
    if requested != vocab_size:
        raise ValueError(
            f"vocab_size is {vocab_size}, but the vocabulary of vocabulary_version {version} "
            f"({previous.uri}) was trained for {requested}: a new vocabulary makes the pretrained models "
            "unusable; raise vocabulary_version to train one, or keep vocab_size"
        )
    fileio.makedirs(output.uri)
    for name in (MODEL_FILE, VOCAB_FILE):
        fileio.copy(os.path.join(previous.uri, name), os.path.join(output.uri, name), overwrite=True)
    with fileio.open(os.path.join(output.uri, MODEL_FILE), "rb") as f:
        model_proto = f.read()
    # Measured where the vocabulary's own figures were, so that the two compare.
    split = own.get("measured_on", "train")
    uris = _split_uris(examples, split)
    if uris is None:
        split, uris = "train", _split_uris(examples, "train")
    new = tokenization_stats(model_proto, read_sentences(uris), int(own.get("max_sentences", 100_000)))
    # A vocabulary copied more than once keeps the figures it was trained with.
    trained = own.get("vocabulary") or {k: own[k] for k in ("unk_rate", "pieces_per_word", "measured_on")}
    trained_ppw = float(trained["pieces_per_word"])
    stats = {
        **{k: v for k, v in own.items() if k not in ("vocabulary", "drift", "reused_from")},
        **new,
        "measured_on": split,
        "reused_from": previous.uri,
        "vocabulary": trained,
        "drift": {
            "unk_rate_increase": new["unk_rate"] - float(trained["unk_rate"]),
            "pieces_per_word_ratio": new["pieces_per_word"] / trained_ppw if trained_ppw else 1.0,
        },
    }
    with fileio.open(os.path.join(output.uri, STATS_FILE), "w") as f:
        f.write(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return stats
