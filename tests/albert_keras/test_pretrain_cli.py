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
