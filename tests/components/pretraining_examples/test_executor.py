"""The PretrainingExamples executor on temp-dir artifacts: transformed examples and a trained tokenizer
in, Parquet instances, pretraining_examples.json and custom properties out."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
import tensorflow as tf
from tfx.types import artifact_utils, channel_utils, standard_artifacts

from albert_keras.pretraining_data import MaskingConfig, document_key
from albert_keras.pretraining_shards import MAX_PREDICTIONS_KEY, MAX_SEQ_LENGTH_KEY, schema
from components.pretraining_examples import executor
from components.pretraining_examples.component import PretrainingExamples
from components.sentencepiece_tokenizer.component import SentencePieceModel
from components.sentencepiece_tokenizer.train import train_sentencepiece, vocabulary, vocabulary_sha256

from ..sentencepiece_tokenizer.conftest import lines, sample_notes
from .test_instances import assert_same_instances, padded_rows, reference

pytestmark = pytest.mark.backend_independent

CONFIG = MaskingConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=2)
SEED = 3
POOL_SIZE = 4


def _example(sentences: list[list[int]]) -> bytes:
    ids = [i for sentence in sentences for i in sentence]
    feature = {
        executor.SENTENCE_IDS_FEATURE: tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
        executor.SENTENCE_LENGTHS_FEATURE: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[len(s) for s in sentences])
        ),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_split(uri: Path, split: str, documents: list[list[list[int]]], files: int = 2) -> None:
    """The documents as GZIP TFRecords of transformed examples, spread over `files` files."""
    folder = uri / f"Split-{split}"
    folder.mkdir(parents=True)
    for shard in range(files):
        path = folder / f"transformed_examples-{shard:05d}-of-{files:05d}.gz"
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            for document in documents[shard::files]:
                writer.write(_example(document))


def _decoded(document: list[list[int]]) -> list[np.ndarray]:
    """A document as the pretraining step reads it: empty sentences dropped."""
    return [np.array(s, np.int32) for s in document if s]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> SentencePieceModel:
    uri = tmp_path_factory.mktemp("tokenizer")
    train_sentencepiece(lines(sample_notes()[:80]), uri, vocab_size=300, seed=0)
    artifact = SentencePieceModel()
    artifact.uri = str(uri)
    return artifact


@pytest.fixture(scope="module")
def corpus(tokenizer) -> dict[str, list[list[list[int]]]]:
    """Sample notes as tokenized documents (one sentence per line), with an empty note and an empty
    sentence, as the Transform may write them."""
    processor = spm.SentencePieceProcessor(model_file=str(Path(tokenizer.uri) / "spm.model"))
    notes = [[processor.encode(line) for line in lines([note])[:12]] for note in sample_notes()[100:132]]
    notes[1].insert(1, [])
    return {"train": [*notes[:22], []], "eval": notes[22:]}


@pytest.fixture(scope="module")
def transformed(corpus, tmp_path_factory) -> standard_artifacts.Examples:
    uri = tmp_path_factory.mktemp("transformed")
    for split, documents in corpus.items():
        _write_split(uri, split, documents)
    examples = standard_artifacts.Examples()
    examples.uri = str(uri)
    examples.split_names = artifact_utils.encode_split_names(list(corpus))
    return examples


def _run(transformed, tokenizer, out: Path, **overrides) -> standard_artifacts.Examples:
    output = standard_artifacts.Examples()
    output.uri = str(out)
    properties = {
        executor.MAX_SEQ_LENGTH: CONFIG.max_seq_length,
        executor.MAX_PREDICTIONS_PER_SEQ: CONFIG.max_predictions_per_seq,
        executor.MASKED_LM_PROB: CONFIG.masked_lm_prob,
        executor.SHORT_SEQ_PROB: CONFIG.short_seq_prob,
        executor.DUPE_FACTOR: CONFIG.dupe_factor,
        executor.SEED: SEED,
        executor.RANDOM_POOL_SIZE: POOL_SIZE,
        executor.SPLITS: json.dumps(["train", "eval"]),
        **overrides,
    }
    inputs = {executor.TRANSFORMED_EXAMPLES_KEY: [transformed], executor.TOKENIZER_KEY: [tokenizer]}
    executor.Executor().Do(inputs, {executor.EXAMPLES_KEY: [output]}, properties)
    return output


@pytest.fixture(scope="module")
def output(transformed, tokenizer, tmp_path_factory) -> standard_artifacts.Examples:
    return _run(transformed, tokenizer, tmp_path_factory.mktemp("instances"))


@pytest.fixture(scope="module")
def summary(output) -> dict:
    return json.loads((Path(output.uri) / executor.SUMMARY_FILE).read_text())


def test_parquet_files_hold_the_lengths_in_their_schema(output):
    assert artifact_utils.decode_split_names(output.split_names) == ["train", "eval"]
    for split in ("train", "eval"):
        files = sorted((Path(output.uri) / f"Split-{split}").glob("*.parquet"))
        assert files
        for path in files:
            metadata = pq.read_schema(path).metadata
            assert metadata[MAX_SEQ_LENGTH_KEY] == b"64"
            assert metadata[MAX_PREDICTIONS_KEY] == b"10"
    assert not (Path(output.uri) / ".counts").exists()


def test_counts_agree_with_the_files(output, summary, corpus):
    for split, documents in corpus.items():
        figures = summary["splits"][split]
        listed = {entry["path"]: entry["rows"] for entry in figures["files"]}
        on_disk = {
            f"Split-{split}/{path.name}": pq.read_metadata(path).num_rows
            for path in (Path(output.uri) / f"Split-{split}").glob("*.parquet")
        }
        assert listed == on_disk
        assert figures["documents"] == len(documents)
        assert figures["instances"] == sum(listed.values()) > len(documents)
        assert output.get_int_custom_property(f"instances_{split}") == figures["instances"]


def test_summary_records_the_settings_and_vocabulary(output, summary, tokenizer):
    model_proto = (Path(tokenizer.uri) / "spm.model").read_bytes()
    assert summary["masking"] == {
        "max_seq_length": 64,
        "max_predictions_per_seq": 10,
        "masked_lm_prob": 0.15,
        "short_seq_prob": 0.1,
        "max_ngram": 3,
        "dupe_factor": 2,
    }
    assert (summary["seed"], summary["random_pool_size"]) == (SEED, POOL_SIZE)
    assert summary["vocabulary"] == {"size": 300, "sha256": vocabulary_sha256(model_proto)}
    assert output.get_string_custom_property("vocabulary_sha256") == vocabulary_sha256(model_proto)
    assert output.get_string_custom_property("payload_format") == "FORMAT_PARQUET"


def test_rows_are_the_sequential_instances_of_each_split(output, corpus, tokenizer):
    """Each split on its own (its own pool): the rows equal `create_instances` of that split's notes."""
    vocab = vocabulary((Path(tokenizer.uri) / "spm.model").read_bytes())
    for split, documents in corpus.items():
        decoded = [_decoded(d) for d in documents]
        assert len({document_key(d) for d in decoded}) == len(decoded)
        rows = [
            row
            for path in sorted((Path(output.uri) / f"Split-{split}").glob("*.parquet"))
            for row in pq.read_table(path).to_pylist()
        ]
        counts = Counter(row["document_key"] for row in rows)
        expected = reference(decoded, counts, SEED, vocab, CONFIG, POOL_SIZE)
        assert_same_instances(padded_rows(rows, vocab, CONFIG), expected)


def test_a_missing_split_is_named(transformed, tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"no 'test' split in the examples"):
        _run(transformed, tokenizer, tmp_path, **{executor.SPLITS: json.dumps(["train", "test"])})


def test_component_takes_the_transform_output_and_validates_settings():
    channels = {
        "examples": channel_utils.as_channel([standard_artifacts.Examples()]),
        "tokenizer": channel_utils.as_channel([SentencePieceModel()]),
    }
    lengths = {"max_seq_length": 64, "max_predictions_per_seq": 10}
    component = PretrainingExamples(**channels, **lengths, dupe_factor=2)
    assert set(component.outputs) == {"examples"}
    assert set(component.inputs) == {"transformed_examples", "tokenizer"}
    assert json.loads(component.exec_properties[executor.SPLITS]) == ["train", "eval"]
    with pytest.raises(ValueError, match="dupe_factor must be >= 1, received 0"):
        PretrainingExamples(**channels, **lengths, dupe_factor=0)
    with pytest.raises(ValueError, match="max_seq_length must be >= 5"):
        PretrainingExamples(**channels, max_seq_length=4, max_predictions_per_seq=10, dupe_factor=1)
    with pytest.raises(ValueError, match="splits must be distinct"):
        PretrainingExamples(**channels, **lengths, dupe_factor=1, splits=["train", "train"])


def test_a_file_without_the_lengths_is_refused(tmp_path):
    expected = schema(64, 10)
    pq.write_table(expected.empty_table(), tmp_path / "ok.parquet")
    assert executor.written_files(str(tmp_path), expected) == [("ok.parquet", 0)]
    pq.write_table(expected.empty_table().replace_schema_metadata(None), tmp_path / "bare.parquet")
    with pytest.raises(ValueError, match=r"bare\.parquet: schema metadata max_seq_length is None"):
        executor.written_files(str(tmp_path), expected)


def test_lengths_that_do_not_split_the_ids_name_the_file():
    document = executor.parse_document(("f.gz", _example([[5, 6], [], [7]])))
    assert [s.tolist() for s in document] == [[5, 6], [7]]
    record = tf.train.Example.FromString(_example([[5, 6], [7]]))
    record.features.feature[executor.SENTENCE_LENGTHS_FEATURE].int64_list.value[:] = [2, 2]
    with pytest.raises(ValueError, match=r"^f\.gz: .*\(2 sentences, 4 ids\) do not split its 3"):
        executor.parse_document(("f.gz", record.SerializeToString()))
