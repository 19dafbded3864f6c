"""The shipped sample as notes and sentences, and one small model trained on it for the whole session."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sentencepiece as spm

from components.sentencepiece_tokenizer.train import TokenizerArtifacts, train_sentencepiece

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"


def sample_notes() -> list[str]:
    """Every note of the sample: the MTSamples transcriptions (one per sample_id), then the abstracts."""
    csv.field_size_limit(1 << 24)
    with open(SAMPLE / "mtsamples_sample.csv", newline="", encoding="utf-8") as f:
        notes = {row["sample_id"]: row["transcription"] for row in csv.DictReader(f)}
    with open(SAMPLE / "ncbi_disease_sample.jsonl", encoding="utf-8") as f:
        abstracts = [json.loads(line)["text"] for line in f]
    return list(notes.values()) + abstracts


def lines(notes: list[str]) -> list[str]:
    """The non-empty lines of the notes, standing in for the ExampleGen's sentences."""
    return [line for note in notes for line in note.splitlines() if line.strip()]


def pieces_within(model_path: Path, words: tuple[str, ...]) -> set[str]:
    """The model's pieces of four or more characters that are parts of `words` (made-up, held-out words)."""
    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    pieces = (processor.id_to_piece(i).lstrip("▁") for i in range(processor.get_piece_size()))
    return {p for p in pieces if len(p) >= 4 and any(p in word for word in words)}


@pytest.fixture(scope="session")
def notes() -> list[str]:
    return sample_notes()


@pytest.fixture(scope="session")
def trained(notes, tmp_path_factory) -> TokenizerArtifacts:
    return train_sentencepiece(lines(notes), tmp_path_factory.mktemp("spm"), vocab_size=500, seed=0)


@pytest.fixture(scope="session")
def model_proto(trained) -> bytes:
    return trained.model_path.read_bytes()
