"""Pretraining instances against the targets and against a plain port of google-research's code."""

import random
from collections import Counter

import numpy as np
import pytest

from albert_keras.pretraining_data import (
    WORD_START,
    MaskingConfig,
    Vocabulary,
    create_instances,
    mask_tokens,
    ngram_probabilities,
    tf_dataset,
)

# Data generation (numpy, tf.data) that no Keras backend touches: the JAX pass skips it.
pytestmark = pytest.mark.backend_independent

PIECES = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", ".", ","]
PIECES += [f"{WORD_START}w{i}" for i in range(150)] + [f"x{i}" for i in range(100)]
VOCAB = Vocabulary.from_pieces(PIECES)
SPECIAL = {VOCAB.cls_id, VOCAB.sep_id, VOCAB.mask_id, VOCAB.pad_id}
STARTS = [i for i, p in enumerate(PIECES) if p.startswith(WORD_START)]
CONTINUATIONS = [i for i, p in enumerate(PIECES) if p.startswith("x")]


def synthetic_corpus(num_documents=60, seed=0, max_words=14):
    """Documents of sentences made of words (a start piece and 0-2 continuation pieces)."""
    rng = np.random.default_rng(seed)
    documents = []
    for _ in range(num_documents):
        document = []
        for _ in range(rng.integers(1, 12)):
            sentence = []
            for _ in range(rng.integers(2, max_words)):
                sentence.append(int(rng.choice(STARTS)))
                sentence += [int(c) for c in rng.choice(CONTINUATIONS, size=rng.integers(0, 3))]
            sentence.append(VOCAB.pieces.index("."))
            document.append(sentence)
        documents.append(document)
    return documents


CONFIG = MaskingConfig(max_seq_length=96, max_predictions_per_seq=96, dupe_factor=3)


def reference_masking(tokens, rng: random.Random, config: MaskingConfig):
    """google-research/albert create_masked_lm_predictions on piece strings (n drawn from `rng`)."""

    def is_start(piece):
        return piece.startswith(WORD_START) or piece.startswith("<") or piece in {".", ","}

    cand = []
    for i, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]"):
            continue
        if cand and not is_start(token):
            cand[-1].append(i)
        else:
            cand.append([i])
    num_to_predict = min(config.max_predictions_per_seq, max(1, round(len(tokens) * config.masked_lm_prob)))
    ngrams = list(range(1, config.max_ngram + 1))
    pvals = [1.0 / n for n in ngrams]
    ngram_indexes = [[cand[idx : idx + n] for n in ngrams] for idx in range(len(cand))]
    rng.shuffle(ngram_indexes)
    masked, covered, spans = [], set(), []
    for cand_index_set in ngram_indexes:
        if len(masked) >= num_to_predict:
            break
        n = rng.choices(ngrams, weights=pvals)[0]
        index_set = [i for word in cand_index_set[n - 1] for i in word]
        n -= 1
        while len(masked) + len(index_set) > num_to_predict:
            if n == 0:
                break
            index_set = [i for word in cand_index_set[n - 1] for i in word]
            n -= 1
        if len(masked) + len(index_set) > num_to_predict or any(i in covered for i in index_set):
            continue
        covered.update(index_set)
        masked += index_set
        spans.append(len(cand_index_set[n]))
    return masked, spans


def _instances(seed=1, config=CONFIG, documents=None):
    return list(create_instances(documents or synthetic_corpus(), VOCAB, config, seed=seed))


def test_instances_are_deterministic_for_a_seed():
    a, b, c = _instances(seed=1), _instances(seed=1), _instances(seed=2)
    assert len(a) == len(b) and all(np.array_equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)
    assert any(not np.array_equal(x["token_ids"], y["token_ids"]) for x, y in zip(a, c, strict=False))


def test_instance_layout_and_no_special_token_is_ever_masked():
    for inst in _instances():
        n = int(inst["padding_mask"].sum())
        tokens = inst["token_ids"]
        assert tokens[0] == VOCAB.cls_id and tokens[n - 1] == VOCAB.sep_id
        sep = np.flatnonzero(tokens[:n] == VOCAB.sep_id)
        assert len(sep) == 2
        assert (inst["segment_ids"][: sep[0] + 1] == 0).all() and (
            inst["segment_ids"][sep[0] + 1 : n] == 1
        ).all()
        assert (tokens[n:] == VOCAB.pad_id).all() and (inst["segment_ids"][n:] == 0).all()
        count = int(inst["mlm_weights"].sum())
        positions = inst["mask_positions"][:count]
        assert count >= 1 and (np.diff(positions) > 0).all()
        assert all(0 < p < n and p not in sep for p in positions)  # never [CLS], [SEP] or padding
        assert not set(inst["mlm_labels"][:count].tolist()) & SPECIAL
        assert (inst["mlm_weights"][count:] == 0).all()


def test_masking_rate_replacements_and_ngram_lengths_hit_the_targets():
    config = MaskingConfig(max_seq_length=96, max_predictions_per_seq=96)
    rng = np.random.default_rng(3)
    py_rng = random.Random(3)
    ours_spans, ref_spans, drawn = Counter(), Counter(), []
    ours_rate, ref_rate, outcomes = [], [], Counter()
    for document in synthetic_corpus(600, seed=4):
        tokens = np.array([VOCAB.cls_id, *[t for s in document for t in s][:93], VOCAB.sep_id], np.int32)
        masked, positions, labels, spans = mask_tokens(tokens, VOCAB, config, rng, drawn_ngrams=drawn)
        ours_spans.update(spans)
        ours_rate.append(len(positions) / len(tokens))
        for p in positions:
            outcomes[
                "mask" if masked[p] == VOCAB.mask_id else "same" if masked[p] == tokens[p] else "random"
            ] += 1
        assert labels == tokens[positions].tolist()
        ref_positions, ref = reference_masking([VOCAB.pieces[t] for t in tokens], py_rng, config)
        ref_spans.update(ref)
        ref_rate.append(len(ref_positions) / len(tokens))

    def distribution(counter):
        total = sum(counter.values())
        return np.array([counter[n] / total for n in (1, 2, 3)])

    ours, ref = distribution(ours_spans), distribution(ref_spans)
    target = ngram_probabilities(3)
    drawn_shares = distribution(Counter(drawn))
    print(f"n-gram draws: {np.round(drawn_shares, 3)} over {len(drawn)}, target 1/n {np.round(target, 3)}")
    print(f"n-gram spans after the budget: ours {np.round(ours, 3)}, reference {np.round(ref, 3)}")
    print(f"masking rate: ours {np.mean(ours_rate):.4f}, reference {np.mean(ref_rate):.4f}, target 0.15")
    total = sum(outcomes.values())
    shares = {k: round(v / total, 3) for k, v in outcomes.items()}
    print(f"replacement shares (target mask 0.8, same 0.1, random 0.1): {shares}")
    assert np.abs(drawn_shares - target).max() < 0.025
    assert np.abs(ours - ref).max() < 0.04  # the budget shortens spans alike in both
    assert abs(np.mean(ours_rate) - 0.15) < 0.01 and abs(np.mean(ours_rate) - np.mean(ref_rate)) < 0.01
    assert abs(outcomes["mask"] / total - 0.8) < 0.03
    assert abs(outcomes["same"] / total - 0.1) < 0.02 and abs(outcomes["random"] / total - 0.1) < 0.02


def _unmasked(inst):
    tokens = inst["token_ids"].copy()
    count = int(inst["mlm_weights"].sum())
    tokens[inst["mask_positions"][:count]] = inst["mlm_labels"][:count]
    return tokens


def test_sentence_order_pairs_come_from_consecutive_text_swapped_half_the_time():
    documents = synthetic_corpus(400, seed=5, max_words=5)
    texts = [[t for s in d for t in s] for d in documents]
    labels = []
    for inst in create_instances(
        documents, VOCAB, MaskingConfig(max_seq_length=64, short_seq_prob=0.0), seed=6
    ):
        tokens = _unmasked(inst)
        n = int(inst["padding_mask"].sum())
        sep = int(np.flatnonzero(tokens[:n] == VOCAB.sep_id)[0])
        a, b = tokens[1:sep].tolist(), tokens[sep + 1 : n - 1].tolist()
        first, second = (b, a) if inst["sop_labels"] == 1 else (a, b)
        joined = first + second
        in_one_document = any(
            joined == text[i : i + len(joined)] for text in texts for i in range(len(text) - len(joined) + 1)
        )
        if in_one_document:
            labels.append(int(inst["sop_labels"]))
    swap_rate = np.mean(labels)
    print(f"sentence order: {len(labels)} pairs from consecutive text, swap rate {swap_rate:.3f}")
    assert len(labels) > 250
    assert abs(swap_rate - 0.5) < 0.08


def test_short_sequences_appear_at_the_short_seq_prob():
    config = MaskingConfig(max_seq_length=64, short_seq_prob=1.0)
    lengths = [int(i["padding_mask"].sum()) for i in _instances(config=config)]
    full = [int(i["padding_mask"].sum()) for i in _instances(config=MaskingConfig(max_seq_length=64))]
    assert np.mean(lengths) < np.mean(full) - 5


def test_vocabulary_must_have_the_special_pieces():
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        Vocabulary.from_pieces(["<pad>", "<unk>", "[CLS]", "[SEP]", "a"])


def test_tf_dataset_feeds_the_pretrainer():
    from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer

    config = MaskingConfig(max_seq_length=32, max_predictions_per_seq=6)
    dataset = tf_dataset(lambda: synthetic_corpus(10), VOCAB, config, seed=7).batch(4)
    x, y = next(iter(dataset))
    assert (
        x["token_ids"].shape == (4, 32) and y["mlm_labels"].shape == (4, 6) and y["sop_labels"].shape == (4,)
    )
    first = [b[0]["token_ids"].numpy() for b in dataset.take(3)]
    again = [b[0]["token_ids"].numpy() for b in dataset.take(3)]
    assert all(np.array_equal(p, q) for p, q in zip(first, again, strict=True))  # re-read, same seed
    model = AlbertPretrainer(AlbertBackbone(AlbertConfig.preset("tiny", vocab_size=len(PIECES))))
    model.compile(optimizer="adam")
    history = model.fit(dataset.take(2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
