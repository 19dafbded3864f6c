import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import albert_keras  # noqa: F401  (registers its classes, so load_model finds them)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = [
    "patient",
    "denies",
    "chest",
    "pain",
    "fever",
    "cough",
    "nausea",
    "history",
    "of",
    "hypertension",
    "diabetes",
    "exam",
    "normal",
]


@pytest.fixture(scope="module")
def corpus_and_model(tmp_path_factory):
    """Synthetic note-like sentences and a SentencePiece model with ALBERT's symbols."""
    import sentencepiece

    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(40):  # documents
        for _ in range(rng.integers(2, 8)):
            lines.append(" ".join(rng.choice(WORDS, size=rng.integers(4, 12))) + ".")
        lines.append("")
    (folder / "notes.txt").write_text("\n".join(lines) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(folder / "notes.txt"),
        model_prefix=str(folder / "sp"),
        vocab_size=40,
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        minloglevel=2,
    )
    return folder


def test_cli_pretrains_resumes_and_saves(corpus_and_model, tmp_path):
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    args = [
        sys.executable, "-m", "albert_keras.pretrain_cli",
        "--corpus", str(corpus_and_model / "*.txt"), "--spm-model", str(corpus_and_model / "sp.model"),
        "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "4", "--batch", "2", "--seq", "32",
        "--checkpoint-every", "2", "--backend", other,
    ]  # fmt: skip
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"backend {other}; 1 files, 40 documents; vocabulary 40" in result.stdout
    assert "mlm_accuracy" in result.stdout and "sop_accuracy" in result.stdout
    assert "patient" not in result.stdout + result.stderr  # no corpus text is printed
    assert (tmp_path / "run" / "pretrainer.keras").exists()
    assert '"step": 4' in (tmp_path / "run" / "checkpoints" / "checkpoint.json").read_text()
    loaded = keras.saving.load_model(str(tmp_path / "run" / "pretrainer.keras"), safe_mode=True)
    assert loaded.backbone.config.vocab_size == 40

    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "step 4:" not in again.stdout  # already at --steps: nothing retrained


def test_cli_says_when_the_corpus_matches_nothing(tmp_path):
    from albert_keras.pretrain_cli import main

    with pytest.raises(SystemExit, match="matched no file"):
        main(["--corpus", str(tmp_path / "none*.txt"), "--spm-model", "x.model", "--out", str(tmp_path)])


def test_records_hold_exactly_the_instances(corpus_and_model, tmp_path):
    import sentencepiece

    from albert_keras.pretraining_data import MaskingConfig, Vocabulary, create_instances, read_documents
    from albert_keras.pretraining_records import records_dataset, write_records

    processor = sentencepiece.SentencePieceProcessor(model_file=str(corpus_and_model / "sp.model"))
    vocab = Vocabulary.from_pieces([processor.id_to_piece(i) for i in range(processor.get_piece_size())])
    masking = MaskingConfig(max_seq_length=24, max_predictions_per_seq=5)
    paths = [str(corpus_and_model / "notes.txt")]
    instances = list(create_instances(read_documents(paths, processor), vocab, masking, seed=3))
    for name in ("a.tfrecord", "b.tfrecord.gz"):
        assert write_records(instances, str(tmp_path / name)) == len(instances)
    read = list(records_dataset([str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord.gz")], 24, 5))
    assert len(read) == 2 * len(instances)
    for instance, (x, y) in zip(instances * 2, read, strict=True):
        for name, value in {**x, **y}.items():
            np.testing.assert_array_equal(value.numpy(), instance[name], err_msg=name)
            assert value.dtype == instance[name].dtype, name
    with pytest.raises(ValueError, match=r"a\.tfrecord: records have max_seq_length 24 .* expected 32"):
        records_dataset([str(tmp_path / "a.tfrecord")], 32, 5)


def test_cli_pretrains_from_tokenized_records(corpus_and_model, tmp_path):
    records = tmp_path / "train.tfrecord.gz"
    make = [
        sys.executable, "-m", "albert_keras.pretraining_records", "--corpus", str(corpus_and_model / "*.txt"),
        "--spm-model", str(corpus_and_model / "sp.model"), "--out", str(records), "--seq", "32",
        "--max-predictions", "6", "--dupe-factor", "2",
    ]  # fmt: skip
    result = subprocess.run(make, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout and "patient" not in result.stdout + result.stderr
    train = [
        sys.executable, "-m", "albert_keras.pretrain_cli", "--corpus", str(records),
        "--spm-model", str(corpus_and_model / "sp.model"), "--out", str(tmp_path / "run"), "--preset", "tiny",
        "--steps", "2", "--batch", "2", "--seq", "32", "--max-predictions", "6",
    ]  # fmt: skip
    result = subprocess.run(train, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 TFRecord files" in result.stdout and "step 2:" in result.stdout
    wrong = subprocess.run(
        [*train[:-1], "8"], cwd=REPO, capture_output=True, text=True, timeout=600
    )  # --max-predictions 8 against records of 6
    assert wrong.returncode != 0 and "max_predictions_per_seq 6; expected 32 and 8" in wrong.stderr
