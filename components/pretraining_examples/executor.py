"""Executor of PretrainingExamples: the Transform's tokenized notes -> ALBERT pretraining instances in
Parquet, made once by Beam instead of inside every training run.

Per split (`splits`, each on its own, with its own random pool, so an eval note is never paired with
a train one): the transformed examples (`Split-<name>/`, GZIP TFRecords of tf.Examples whose
`sentence_token_ids` hold every sentence's ids and `sentence_lengths` the ids per sentence) become
documents, `instances.MakeInstances` turns them into rows, and `WriteToParquet` writes the rows with
`pretraining_shards.schema` (the instance lengths in its metadata) under the output's `Split-<name>/`.
The instances depend only on the notes, the vocabulary, the masking settings and the seed, not on the
runner or the number of workers.

After the pipeline, the executor reads every file's footer (its row count, and that the schema
metadata is there: the Trainers' reader refuses a file without it) and writes `pretraining_examples.json`
at the artifact root: the masking settings, seed, vocabulary, and per split the documents, instances
and files. Logs and errors give counts and file names, never note content.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from absl import logging
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from albert_keras.pretraining_data import MaskingConfig, Vocabulary
from albert_keras.pretraining_shards import MAX_PREDICTIONS_KEY, MAX_SEQ_LENGTH_KEY, schema
from components.pretraining_examples.instances import MakeInstances
from components.sentencepiece_tokenizer.train import MODEL_FILE, vocabulary, vocabulary_sha256

#: Inputs: the TokenizedTransform's transformed examples and the SentencePieceTokenizer's model.
TRANSFORMED_EXAMPLES_KEY = "transformed_examples"
TOKENIZER_KEY = "tokenizer"
#: Output: the instances, a standard Examples artifact of Parquet files.
EXAMPLES_KEY = "examples"

MAX_SEQ_LENGTH = "max_seq_length"
MAX_PREDICTIONS_PER_SEQ = "max_predictions_per_seq"
MASKED_LM_PROB = "masked_lm_prob"
SHORT_SEQ_PROB = "short_seq_prob"
DUPE_FACTOR = "dupe_factor"
SEED = "seed"
RANDOM_POOL_SIZE = "random_pool_size"
#: A JSON list of split names.
SPLITS = "splits"
DEFAULT_SPLITS = ("train", "eval")

#: At the output artifact's root: settings, vocabulary, and per split the counts and files.
SUMMARY_FILE = "pretraining_examples.json"
#: The custom property of the output artifact with a split's instance count is this prefix + its name.
INSTANCES_PROPERTY_PREFIX = "instances_"
ROW_GROUP_BYTES = 8 * 1024 * 1024
FILE_PREFIX = "pretraining_instances"
FILE_SUFFIX = ".parquet"

SENTENCE_IDS_FEATURE = "sentence_token_ids"
SENTENCE_LENGTHS_FEATURE = "sentence_lengths"

_CODEC = "snappy"
_COUNTS_DIR = ".counts"


@dataclasses.dataclass(frozen=True)
class PretrainingParams:
    """The execution parameters, parsed and validated (the component validates them the same way)."""

    config: MaskingConfig
    seed: int
    random_pool_size: int
    splits: tuple[str, ...]

    @classmethod
    def from_exec_properties(cls, exec_properties: Mapping[str, Any]) -> PretrainingParams:
        """Raises ValueError, saying what was received, for settings no instance can be made with."""
        raw_splits = exec_properties.get(SPLITS)
        splits = tuple(json.loads(raw_splits)) if raw_splits else DEFAULT_SPLITS
        if not splits or len(set(splits)) != len(splits) or not all(isinstance(s, str) and s for s in splits):
            raise ValueError(f"splits must be distinct non-empty names, received {list(splits)}")
        config = MaskingConfig(
            max_seq_length=int(exec_properties[MAX_SEQ_LENGTH]),
            max_predictions_per_seq=int(exec_properties[MAX_PREDICTIONS_PER_SEQ]),
            masked_lm_prob=float(exec_properties[MASKED_LM_PROB]),
            short_seq_prob=float(exec_properties[SHORT_SEQ_PROB]),
            dupe_factor=int(exec_properties[DUPE_FACTOR]),
        )
        for name, value, least in (
            (MAX_PREDICTIONS_PER_SEQ, config.max_predictions_per_seq, 1),
            (DUPE_FACTOR, config.dupe_factor, 1),
            (SEED, int(exec_properties[SEED]), 0),
            (RANDOM_POOL_SIZE, int(exec_properties[RANDOM_POOL_SIZE]), 0),
        ):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, received {value}")
        return cls(
            config=config,
            seed=int(exec_properties[SEED]),
            random_pool_size=int(exec_properties[RANDOM_POOL_SIZE]),
            splits=splits,
        )


def parse_document(file_and_record: tuple[str, bytes]) -> list[np.ndarray]:
    """A transformed example as its document: the ids of each non-empty sentence (the Transform writes
    every sentence's ids concatenated, and the ids per sentence). Raises ValueError naming the file
    when the lengths do not add up to the ids."""
    path, record = file_and_record
    features = tf.train.Example.FromString(record).features.feature
    ids = np.array(features[SENTENCE_IDS_FEATURE].int64_list.value, np.int64).astype(np.int32)
    lengths = np.array(features[SENTENCE_LENGTHS_FEATURE].int64_list.value, np.int64)
    if lengths.sum() != len(ids) or (lengths < 0).any():
        raise ValueError(
            f"{path}: a record's {SENTENCE_LENGTHS_FEATURE} ({len(lengths)} sentences, {int(lengths.sum())} "
            f"ids) do not split its {len(ids)} {SENTENCE_IDS_FEATURE}"
        )
    return [s for s in np.split(ids, np.cumsum(lengths)[:-1]) if len(s)]


def _count(pcoll: beam.PCollection, split: str, what: str) -> beam.PCollection:
    return (
        pcoll
        | f"Count{what.capitalize()}[{split}]" >> beam.combiners.Count.Globally()
        | f"Label{what.capitalize()}[{split}]" >> beam.Map(lambda n: json.dumps([split, what, n]))
    )


def _make_split(
    pipeline: beam.Pipeline,
    split: str,
    input_uris: Sequence[str],
    output_uri: str,
    vocab: Vocabulary,
    params: PretrainingParams,
) -> list[beam.PCollection]:
    """Adds one split's reading, instances and Parquet writing; returns its count lines."""
    config = params.config
    documents = (
        pipeline
        | f"Patterns[{split}]" >> beam.Create([os.path.join(uri, "*") for uri in input_uris])
        | f"Read[{split}]"
        >> beam.io.ReadAllFromTFRecord(compression_type=CompressionTypes.GZIP, with_filename=True)
        | f"Parse[{split}]" >> beam.Map(parse_document)
    )
    rows = documents | f"MakeInstances[{split}]" >> MakeInstances(
        vocab, config, params.seed, params.random_pool_size
    )
    _ = rows | f"Write[{split}]" >> beam.io.WriteToParquet(
        os.path.join(output_uri, FILE_PREFIX),
        schema(config.max_seq_length, config.max_predictions_per_seq),
        codec=_CODEC,
        # Row groups of a few thousand instances: the reader decodes whole row groups, so groups far
        # below its shuffle window keep its memory near one window (Beam's default is 64 MB each).
        row_group_buffer_size=ROW_GROUP_BYTES,
        file_name_suffix=FILE_SUFFIX,
    )
    return [_count(documents, split, "documents"), _count(rows, split, "instances")]


def written_files(split_uri: str, expected: pa.Schema) -> list[tuple[str, int]]:
    """(file name, rows) of every Parquet file of a split, from the footers. Raises ValueError for a
    file whose schema metadata lacks the instance lengths or holds others."""
    files = []
    for path in sorted(fileio.glob(os.path.join(split_uri, f"*{FILE_SUFFIX}"))):
        # Beam's file systems, as its Parquet source reads them: pyarrow needs a seekable file.
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            parquet = pq.ParquetFile(f)
            metadata = parquet.schema_arrow.metadata or {}
            rows = parquet.metadata.num_rows
        for key in (MAX_SEQ_LENGTH_KEY, MAX_PREDICTIONS_KEY):
            if metadata.get(key) != expected.metadata[key]:
                raise ValueError(
                    f"{path}: schema metadata {key.decode()} is {metadata.get(key)!r}, "
                    f"expected {expected.metadata[key]!r}"
                )
        files.append((os.path.basename(path), rows))
    return files


def _read_counts(path: str) -> dict[tuple[str, str], int]:
    with fileio.open(path, "r") as lines:
        return {(split, what): n for split, what, n in (json.loads(line) for line in lines if line.strip())}


def _split_summary(
    split: str, root: str, split_uri: str, counted: Mapping[tuple[str, str], int], expected: pa.Schema
) -> dict[str, Any]:
    """A split's documents, instances and files (paths relative to the artifact root, rows from the
    footers). Raises ValueError when the files hold another number of rows than the pipeline made."""
    files = written_files(split_uri, expected)
    documents, instances = counted[split, "documents"], sum(rows for _, rows in files)
    if instances != counted[split, "instances"]:
        raise ValueError(
            f"split {split!r}: {counted[split, 'instances']} instances made, {instances} rows in the "
            f"files under {split_uri}"
        )
    if documents and not instances:
        logging.warning(
            "PretrainingExamples: split %s: no instances from %d documents; do its examples have %s and %s?",
            split,
            documents,
            SENTENCE_IDS_FEATURE,
            SENTENCE_LENGTHS_FEATURE,
        )
    logging.info(
        "PretrainingExamples: split %s: %d documents, %d instances in %d files",
        split,
        documents,
        instances,
        len(files),
    )
    folder = os.path.relpath(split_uri, root)
    return {
        "documents": documents,
        "instances": instances,
        "files": [{"path": f"{folder}/{name}", "rows": rows} for name, rows in files],
    }


class Executor(base_beam_executor.BaseBeamExecutor):
    """Makes the pretraining instances of each split and writes them as Parquet."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Runs the Beam pipeline, then checks the files and writes pretraining_examples.json.

        Raises ValueError for bad parameters, a split the examples lack, a split folder with no files, or
        a written file without the schema metadata or with another row total than was counted.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        params = PretrainingParams.from_exec_properties(exec_properties)
        examples = input_dict[TRANSFORMED_EXAMPLES_KEY]
        available = [artifact_utils.decode_split_names(a.split_names) for a in examples]
        input_uris = {}
        for split in params.splits:
            if not all(split in names for names in available):
                raise ValueError(f"no {split!r} split in the examples (splits: {available})")
            input_uris[split] = artifact_utils.get_split_uris(examples, split)
            for uri in input_uris[split]:
                if not fileio.glob(os.path.join(uri, "*")):
                    raise ValueError(f"split {split!r} has no files in {uri}")

        tokenizer_uri = artifact_utils.get_single_uri(input_dict[TOKENIZER_KEY])
        with fileio.open(os.path.join(tokenizer_uri, MODEL_FILE), "rb") as f:
            model_proto = f.read()
        vocab = vocabulary(model_proto)

        output = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        output.split_names = artifact_utils.encode_split_names(list(params.splits))
        output_uris = {split: artifact_utils.get_split_uri([output], split) for split in params.splits}
        counts_dir = os.path.join(output.uri, _COUNTS_DIR)
        counts_path = os.path.join(counts_dir, "counts.jsonl")

        with self._make_beam_pipeline() as pipeline:
            counts = [
                line
                for split in params.splits
                for line in _make_split(pipeline, split, input_uris[split], output_uris[split], vocab, params)
            ]
            _ = (
                counts
                | "AllCounts" >> beam.Flatten()
                | "WriteCounts" >> beam.io.WriteToText(counts_path, shard_name_template="", num_shards=1)
            )

        counted = _read_counts(counts_path)
        fileio.rmtree(counts_dir)
        expected = schema(params.config.max_seq_length, params.config.max_predictions_per_seq)
        splits = {
            split: _split_summary(split, output.uri, output_uris[split], counted, expected)
            for split in params.splits
        }

        summary = {
            "masking": dataclasses.asdict(params.config),
            "seed": params.seed,
            "random_pool_size": params.random_pool_size,
            "vocabulary": {"size": len(vocab.pieces), "sha256": vocabulary_sha256(model_proto)},
            "splits": splits,
        }
        with fileio.open(os.path.join(output.uri, SUMMARY_FILE), "w") as f:
            f.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")

        examples_utils.set_payload_format(output, example_gen_pb2.PayloadFormat.FORMAT_PARQUET)
        examples_utils.set_file_format(
            output, example_gen_pb2.FileFormat.Name(example_gen_pb2.FileFormat.FILE_FORMAT_PARQUET)
        )
        output.set_string_custom_property("vocabulary_sha256", summary["vocabulary"]["sha256"])
        for split, figures in splits.items():
            output.set_int_custom_property(INSTANCES_PROPERTY_PREFIX + split, figures["instances"])
