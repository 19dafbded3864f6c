from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import sentencepiece as spm

from components.clinical_text.phi_tokens import PHI_TOKENS
from components.sentencepiece_tokenizer.train import (
    MODEL_FILE,
    STATS_FILE,
    VOCAB_FILE,
    VocabSizeTooLarge,
    reservoir_sample,
    tokenization_stats,
    train_sentencepiece,
    vocabulary,
)

from .conftest import lines, pieces_within


@pytest.fixture(scope="module")
def processor(model_proto) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=model_proto)


def test_albert_special_pieces(processor):
    assert [processor.id_to_piece(i) for i in range(5)] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert processor.unk_id() == 1 and processor.pad_id() == 0
    assert processor.bos_id() == -1 and processor.eos_id() == -1
    assert all(processor.is_control(i) for i in (0, 2, 3, 4))
    assert processor.get_piece_size() == 500


def test_control_symbols_are_never_produced_from_text(processor):
    ids = processor.encode("[CLS] chest pain [SEP] [MASK] <pad>")
    assert not {0, 2, 3, 4} & set(ids)


def test_phi_tokens_stay_one_piece_through_lower_casing(processor):
    for token in PHI_TOKENS:
        text = f"SEEN ON {token} AT{token}, see{token}{token}."
        pieces = processor.encode(text, out_type=str)
        assert pieces.count(token) == 4, (token, pieces)
        assert processor.piece_to_id(token) >= 5
    # Only the exact typed token is a symbol: lower-cased, it is ordinary text.
    assert "[date]" not in processor.encode("on [date] and [DATE]", out_type=str)
    assert "[DATE]" in processor.encode("on [date] and [DATE]", out_type=str)


def test_lower_casing_is_inside_the_model(processor):
    assert processor.encode("Chest PAIN, Hypertension") == processor.encode("chest pain, hypertension")


def test_files_and_stats(trained, notes):
    out = trained.model_path.parent
    assert {p.name for p in out.iterdir()} >= {MODEL_FILE, VOCAB_FILE, STATS_FILE}
    assert len((out / VOCAB_FILE).read_text(encoding="utf-8").splitlines()) == 500
    stats = json.loads((out / STATS_FILE).read_text())
    assert stats == trained.stats
    sentences = lines(notes)
    too_long = sum(len(s.strip().encode()) > 4192 for s in sentences)
    assert stats["sentences_seen"] == len(sentences)
    assert stats["sentences_too_long"] == too_long > 0
    assert stats["sentences_used"] == len(sentences) - too_long
    assert stats["vocab_size"] == 500 and stats["measured_on"] == "train"
    assert 0 <= stats["unk_rate"] < 0.01
    assert 1.0 < stats["pieces_per_word"] < 5.0


def test_tokenization_stats_counts(model_proto, processor):
    texts = ["Chest pain for 2 days.", "  ", "Ω Ж 漢字 unknown-ish ☃"]
    stats = tokenization_stats(model_proto, texts)
    ids = [processor.encode(t) for t in texts if t.strip()]
    pieces = sum(map(len, ids))
    assert stats["sentences"] == 2 and stats["words"] == 5 + 5
    assert stats["pieces"] == pieces
    assert stats["unk_rate"] == sum(i.count(1) for i in ids) / pieces > 0
    assert stats["pieces_per_word"] == pieces / 10


def test_same_seed_same_model_other_seed_other_sample(notes, tmp_path):
    sentences = lines(notes)[:2000]

    def train(seed: int, name: str):
        return train_sentencepiece(
            iter(sentences), tmp_path / name, vocab_size=200, max_sentences=400, seed=seed
        )

    first, again, other = train(3, "a"), train(3, "b"), train(4, "c")
    assert first.model_path.read_bytes() == again.model_path.read_bytes()
    assert first.model_path.read_bytes() != other.model_path.read_bytes()
    assert first.stats["sentences_used"] == 400 and first.stats["sentences_seen"] == 2000


def test_eval_sentences_are_measured_not_trained(notes, tmp_path):
    held_out_words = ("zqxjv", "kwyjibo")
    held_out = ["zqxjv zqxjv zqxjv kwyjibo kwyjibo"] * 200
    trained = train_sentencepiece(
        lines(notes)[:1500], tmp_path / "held_out", vocab_size=300, eval_sentences=iter(held_out)
    )
    assert pieces_within(trained.model_path, held_out_words) == set()
    assert trained.stats["measured_on"] == "eval" and trained.stats["sentences"] == 200
    assert trained.stats["pieces_per_word"] > 2
    # Control: trained on, the held-out words do become pieces, so the check above can fail.
    leaky = train_sentencepiece(lines(notes)[:1500] + held_out, tmp_path / "leaky", vocab_size=300)
    assert pieces_within(leaky.model_path, held_out_words)


def test_vocabulary_for_pretraining_data(model_proto):
    vocab = vocabulary(model_proto)
    assert (vocab.pad_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (0, 2, 3, 4)
    phi_ids = {vocab.pieces.index(t) for t in PHI_TOKENS}
    assert phi_ids | {0, 1, 2, 3, 4} == set(vocab.control_ids)
    assert not phi_ids & set(vocab.replacement_ids())


def test_vocab_too_large_for_corpus_names_the_largest_size_that_works(tmp_path):
    corpus = ["chest pain", "shortness of breath", "no fever"] * 20
    with pytest.raises(VocabSizeTooLarge, match="the largest that works is") as raised:
        train_sentencepiece(corpus, tmp_path / "hard", vocab_size=1000)
    largest = raised.value.largest
    assert 16 < largest < 1000
    # The size named works, and one more does not: it is the largest.
    exact = train_sentencepiece(corpus, tmp_path / "exact", vocab_size=largest)
    assert exact.stats["vocab_size"] == largest
    with pytest.raises(VocabSizeTooLarge):
        train_sentencepiece(corpus, tmp_path / "over", vocab_size=largest + 1)
    lowered = train_sentencepiece(corpus, tmp_path / "lowered", vocab_size=1000, vocab_size_fit="lower")
    assert (lowered.stats["vocab_size"], lowered.stats["requested_vocab_size"]) == (largest, 1000)
    assert lowered.model_path.read_bytes() == exact.model_path.read_bytes()
    soft = train_sentencepiece(corpus, tmp_path / "soft", vocab_size=1000, hard_vocab_limit=False)
    assert 16 < soft.stats["vocab_size"] < 1000
    with pytest.raises(ValueError, match="vocab_size_fit"):
        train_sentencepiece(corpus, tmp_path / "bad", vocab_size=100, vocab_size_fit="shrink")


def test_no_usable_sentences(tmp_path):
    with pytest.raises(ValueError, match="no usable training sentences"):
        train_sentencepiece(["", "   ", "x" * 5000], tmp_path)


def test_reservoir_sample_is_uniform_and_seeded():
    counts = Counter()
    for seed in range(3000):
        sample = reservoir_sample(iter(range(100)), 10, seed)
        assert len(sample) == len(set(sample)) == 10
        counts.update(sample)
    frequencies = np.array([counts[i] for i in range(100)]) / 3000
    # 300 expected hits per item; 5 standard deviations is about 0.027.
    assert np.abs(frequencies - 0.1).max() < 0.03
    assert reservoir_sample(range(1000), 10, 7) == reservoir_sample(range(1000), 10, 7)
    assert reservoir_sample(range(1000), 10, 7) != reservoir_sample(range(1000), 10, 8)
    assert reservoir_sample(iter(range(5)), 10, 0) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        reservoir_sample(range(5), 0, 0)
