from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm
import tensorflow as tf
from tfx.types import artifact_utils, channel_utils, standard_artifacts

from components.sentencepiece_tokenizer import executor
from components.sentencepiece_tokenizer.component import SentencePieceModel, SentencePieceTokenizer
from components.sentencepiece_tokenizer.train import MODEL_FILE, STATS_FILE, VOCAB_FILE

from .conftest import lines, pieces_within

EVAL_ONLY = ZQ, KW = ("zqxjv", "kwyjibo")
FILLER = ("patient", "denies", "fever", "cough", "reports", "mild", "swelling", "abdominal", "tenderness")
EVAL_SENTENCES = [
    f"The {FILLER[i % 9]} {ZQ} {FILLER[i % 7]} {KW} {FILLER[i % 5]} {ZQ} {KW}." for i in range(200)
]


def _example(sentences: list[bytes]) -> bytes:
    text = b" ".join(sentences)
    feature = {
        "sentences": tf.train.Feature(bytes_list=tf.train.BytesList(value=sentences)),
        "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_split(uri: Path, split: str, notes: list[list[str]], files: int = 2) -> None:
    """Writes the notes as gzip TFRecords of tf.Examples, spread over `files` files, as ExampleGen does."""
    folder = uri / f"Split-{split}"
    folder.mkdir(parents=True)
    for shard in range(files):
        path = folder / f"data_tfrecord-{shard:05d}-of-{files:05d}.gz"
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            for note in notes[shard::files]:
                writer.write(_example([s.encode("utf-8") for s in note]))


def _examples(uri: Path, splits: dict[str, list[list[str]]]) -> standard_artifacts.Examples:
    for split, notes in splits.items():
        _write_split(uri, split, notes)
    examples = standard_artifacts.Examples()
    examples.uri = str(uri)
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    return examples


def _run(examples: standard_artifacts.Examples, out: Path, previous=None, **overrides) -> SentencePieceModel:
    model = SentencePieceModel()
    model.uri = str(out)
    properties = {
        executor.VOCAB_SIZE_KEY: 300,
        executor.MAX_SENTENCES_KEY: 100_000,
        executor.TRAIN_SPLIT_KEY: "train",
        executor.EVAL_SPLIT_KEY: "eval",
        executor.SEED_KEY: 0,
        executor.CHARACTER_COVERAGE_KEY: 0.99995,
        **overrides,
    }
    inputs = {executor.EXAMPLES_KEY: [examples], executor.PREVIOUS_KEY: [previous] if previous else []}
    executor.Executor().Do(inputs, {executor.TOKENIZER_KEY: [model]}, properties)
    return model


def _train_notes(notes: list[str]) -> list[list[str]]:
    sentences = lines(notes)[:1500]
    return [sentences[i : i + 10] for i in range(0, len(sentences), 10)]


def _eval_notes() -> list[list[str]]:
    return [EVAL_SENTENCES[i : i + 5] for i in range(0, len(EVAL_SENTENCES), 5)]


@pytest.fixture(scope="module")
def examples(notes, tmp_path_factory) -> standard_artifacts.Examples:
    return _examples(
        tmp_path_factory.mktemp("examples"), {"train": _train_notes(notes), "eval": _eval_notes()}
    )


def test_trains_on_the_train_split_and_measures_on_eval(examples, tmp_path):
    model = _run(examples, tmp_path / "tokenizer")
    out = Path(model.uri)
    assert {MODEL_FILE, VOCAB_FILE, STATS_FILE} <= {p.name for p in out.iterdir()}
    processor = spm.SentencePieceProcessor(model_file=str(out / MODEL_FILE))
    assert processor.get_piece_size() == 300 and processor.piece_to_id("[DATE]") > 4
    assert pieces_within(out / MODEL_FILE, EVAL_ONLY) == set()

    stats = json.loads((out / STATS_FILE).read_text())
    assert stats["sentences_seen"] == 1500
    assert stats["sentences_used"] == 1500 - stats["sentences_too_long"]
    assert stats["measured_on"] == "eval" and stats["sentences"] == len(EVAL_SENTENCES)
    assert stats["pieces_per_word"] > 1.5
    assert model.get_int_custom_property("vocab_size") == 300
    assert model.get_string_custom_property("measured_on") == "eval"
    assert model.get_float_custom_property("unk_rate") == pytest.approx(stats["unk_rate"])
    assert model.get_float_custom_property("pieces_per_word") == pytest.approx(stats["pieces_per_word"])


def test_eval_words_become_pieces_when_trained_on(notes, tmp_path):
    """Control for the test above: with the eval text in the train split, its words are pieces."""
    leaky = _examples(tmp_path / "examples", {"train": [*_train_notes(notes), *_eval_notes()]})
    model = _run(leaky, tmp_path / "tokenizer")
    assert pieces_within(Path(model.uri) / MODEL_FILE, EVAL_ONLY)


def test_without_eval_split_measures_on_the_training_sample(notes, tmp_path):
    examples = _examples(tmp_path / "examples", {"train": [lines(notes)[:300]]})
    model = _run(examples, tmp_path / "tokenizer", vocab_size=200)
    assert json.loads((Path(model.uri) / STATS_FILE).read_text())["measured_on"] == "train"


def test_missing_train_split(tmp_path):
    examples = _examples(tmp_path / "examples", {"eval": [["Chest pain."]]})
    with pytest.raises(ValueError, match="no 'train' split"):
        _run(examples, tmp_path / "tokenizer")


def test_invalid_utf8_names_the_record_not_the_text(tmp_path):
    folder = tmp_path / "examples" / "Split-train"
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "data.gz"), options="GZIP") as writer:
        writer.write(_example([b"fine sentence"]))
        writer.write(_example([b"secret \xff name"]))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train"])
    with pytest.raises(ValueError, match=r"data\.gz: record 1: sentences\[0\] is not valid UTF-8") as error:
        _run(examples, tmp_path / "tokenizer")
    assert "secret" not in str(error.value) and error.value.__cause__ is None


def test_component_wiring():
    examples = channel_utils.as_channel([standard_artifacts.Examples()])
    component = SentencePieceTokenizer(examples=examples, vocab_size=8000, seed=7)
    assert component.outputs[executor.TOKENIZER_KEY].type is SentencePieceModel
    assert SentencePieceModel.TYPE_NAME == "clinical_albert.SentencePieceTokenizer"
    assert component.exec_properties == {
        "vocab_size": 8000,
        "max_sentences": 1_000_000,
        "train_split": "train",
        "eval_split": "eval",
        "seed": 7,
        "character_coverage": 0.99995,
        "vocab_size_fit": "error",
        "vocabulary_version": 1,
    }
    assert component.executor_spec.executor_class is executor.Executor


def test_a_vocabulary_of_the_same_version_is_reused_and_its_drift_measured(examples, notes, tmp_path):
    first = _run(examples, tmp_path / "first")
    assert first.get_int_custom_property("reused") == 0
    assert first.get_int_custom_property("vocabulary_version") == 1
    # New data whose eval split is written in letters the vocabulary never saw: <unk>s and pieces per
    # word rise.
    unseen = [[f"ʒʃŋ {i} ðɣχ qvxzkwj ʎɲɟ."] * 3 for i in range(40)]
    drifted = _examples(tmp_path / "new", {"train": _train_notes(notes[: len(notes) // 2]), "eval": unseen})
    reused = _run(drifted, tmp_path / "reused", first)
    assert reused.get_int_custom_property("reused") == 1
    assert (tmp_path / "reused" / MODEL_FILE).read_bytes() == (tmp_path / "first" / MODEL_FILE).read_bytes()
    same = reused.get_string_custom_property("vocabulary_sha256")
    assert same == first.get_string_custom_property("vocabulary_sha256")
    drift = json.loads(reused.get_string_custom_property("drift"))
    stats = json.loads((tmp_path / "reused" / STATS_FILE).read_text())
    assert stats["vocabulary"]["unk_rate"] == pytest.approx(first.get_float_custom_property("unk_rate"))
    assert drift["unk_rate_increase"] == pytest.approx(stats["unk_rate"] - stats["vocabulary"]["unk_rate"])
    assert drift["unk_rate_increase"] > 0.1
    ratio = stats["pieces_per_word"] / stats["vocabulary"]["pieces_per_word"]
    assert drift["pieces_per_word_ratio"] == pytest.approx(ratio) and ratio != pytest.approx(1.0)
    # Copied again (a reused vocabulary as the previous one), the trained figures stay the reference.
    _run(drifted, tmp_path / "again", reused)
    assert json.loads((tmp_path / "again" / STATS_FILE).read_text())["vocabulary"] == stats["vocabulary"]


def test_a_new_vocabulary_version_trains_and_another_size_must_ask_for_one(examples, tmp_path):
    first = _run(examples, tmp_path / "first")
    newer = _run(examples, tmp_path / "v2", first, **{executor.VOCABULARY_VERSION_KEY: 2})
    assert newer.get_int_custom_property("reused") == 0
    assert newer.get_int_custom_property("vocabulary_version") == 2
    with pytest.raises(ValueError, match="raise vocabulary_version"):
        _run(examples, tmp_path / "bigger", first, **{executor.VOCAB_SIZE_KEY: 400})
